"""The whole configuration of a daily run: one typed section per step, loadable from YAML.

`ebr config` prints the defaults; `--config FILE` and `--set section.field=value` override them. Each step
function receives only its own section.
"""

from __future__ import annotations

from pydantic import Field

from ebr.evaluate.two_tower import TwoTowerEvalConfig
from ebr.features.config import FeaturesConfig
from ebr.index.config import IndexConfig
from ebr.index.export import ExportEmbeddingsConfig
from ebr.rollout import RolloutConfig
from ebr.samples.config import SamplesConfig
from ebr.settings import Section, load_config
from ebr.train.pytorchjob import PyTorchJobConfig
from ebr.train.rankers import CoarseRankerStepConfig, FineRankerStepConfig
from ebr.train.two_tower_config import TEMPERATURE_FIELDS, TwoTowerTrainConfig
from ebr.validation.config import ValidationConfig


class EbrConfig(Section):
    """Every section of the daily run."""

    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    samples: SamplesConfig = Field(default_factory=SamplesConfig)
    two_tower: TwoTowerTrainConfig = Field(default_factory=TwoTowerTrainConfig)
    two_tower_job: PyTorchJobConfig = Field(
        default_factory=PyTorchJobConfig,
        description="train the two-tower model as a Kubeflow PyTorchJob (data-parallel ranks); off by default",
    )
    fine_ranker: FineRankerStepConfig = Field(default_factory=FineRankerStepConfig)
    coarse_ranker: CoarseRankerStepConfig = Field(default_factory=CoarseRankerStepConfig)
    export: ExportEmbeddingsConfig = Field(default_factory=ExportEmbeddingsConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    evaluation: TwoTowerEvalConfig = Field(default_factory=TwoTowerEvalConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)

    @classmethod
    def from_yaml_text(cls, text: str) -> EbrConfig:
        """Parse the YAML text a pipeline parameter carries (empty text = defaults)."""
        import yaml

        tree = yaml.safe_load(text) if text and text.strip() else {}
        return cls.model_validate(tree or {})

    def to_yaml(self) -> str:
        """YAML that `from_yaml_text` and `--config` read back to an equal config. The loss's temperature
        fields are left out: the temperature is set once, on the model (the loss follows it)."""
        import yaml

        tree = self.model_dump(mode="json", exclude={"two_tower": {"loss": set(TEMPERATURE_FIELDS)}})
        return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def load_ebr_config(path: str | None = None, overrides: list[str] | None = None) -> EbrConfig:
    """Defaults, then a YAML file, then `section.field=value` overrides; validated."""
    return load_config(EbrConfig, path, overrides)
