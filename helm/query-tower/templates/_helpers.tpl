{{/*
Chart name, truncated to the 63 characters a label value may hold.
*/}}
{{- define "query-tower.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources: <release>-<chart> unless the release name already holds the chart name.
*/}}
{{- define "query-tower.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "query-tower.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the pods: stable across upgrades.
*/}}
{{- define "query-tower.selectorLabels" -}}
app.kubernetes.io/name: {{ include "query-tower.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "query-tower.labels" -}}
helm.sh/chart: {{ include "query-tower.chart" . }}
{{ include "query-tower.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: query-tower
app.kubernetes.io/part-of: ebr
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "query-tower.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "query-tower.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Server image: repository@digest when a digest is given, repository:tag otherwise (tag defaults to appVersion).
*/}}
{{- define "query-tower.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the admin token; empty when the admin endpoint is not configured.
*/}}
{{- define "query-tower.adminTokenSecretName" -}}
{{- if .Values.adminToken.existingSecret }}
{{- .Values.adminToken.existingSecret }}
{{- else if .Values.adminToken.create }}
{{- printf "%s-admin" (include "query-tower.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Hardened container securityContext, shared by every container of the pod.
*/}}
{{- define "query-tower.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Shell script that copies the bundles from the object store into the bundle volume.
Order matters: the pointer CURRENT is read first, then the version directories are synced, then CURRENT is
renamed into place. The pipeline publishes CURRENT only after its version directory is complete, so the
version named by the pointer is complete in the listing taken after it: the server never sees a CURRENT
that points at a half-copied bundle. A failed copy leaves the old CURRENT in place.
Argument: a dict with "root" (the chart context) and "loop" (true: re-sync forever, for the sidecar).
*/}}
{{- define "query-tower.syncScript" -}}
{{- $os := .root.Values.bundles.objectStore -}}
set -eu
SRC="${BUNDLES_URI%/}"
DEST={{ .root.Values.bundles.mountPath | quote }}
sync_once() {
{{- if eq $os.provider "s3" }}
  aws s3 cp "$SRC/CURRENT" "$DEST/.CURRENT.tmp" --only-show-errors ${S3_ENDPOINT:+--endpoint-url "$S3_ENDPOINT"} || return 1
  aws s3 sync "$SRC/" "$DEST/" --delete --exclude CURRENT --exclude '.CURRENT.*' --only-show-errors ${S3_ENDPOINT:+--endpoint-url "$S3_ENDPOINT"} || return 1
{{- else }}
  gcloud storage cp "$SRC/CURRENT" "$DEST/.CURRENT.tmp" --quiet || return 1
  gcloud storage rsync "$SRC" "$DEST" --recursive --delete-unmatched-destination-objects --exclude '^CURRENT$|^\.CURRENT\.' --quiet || return 1
{{- end }}
  if [ "$(cat "$DEST/.CURRENT.tmp")" != "$(cat "$DEST/CURRENT" 2>/dev/null || true)" ]; then
    mv -f "$DEST/.CURRENT.tmp" "$DEST/CURRENT" || return 1
    echo "bundle sync: CURRENT is now $(cat "$DEST/CURRENT")"
  else
    rm -f "$DEST/.CURRENT.tmp"
  fi
}
{{- if .loop }}
while true; do
  sleep "$SYNC_INTERVAL_S"
  sync_once || echo "bundle sync failed; keeping the bundles already here" >&2
done
{{- else }}
sync_once
{{- end }}
{{- end }}

{{/*
Environment of the sync containers.
*/}}
{{- define "query-tower.syncEnv" -}}
{{- $os := .Values.bundles.objectStore -}}
- name: BUNDLES_URI
  value: {{ $os.uri | quote }}
- name: HOME
  value: /tmp
{{- if eq $os.provider "s3" }}
{{- if $os.endpointUrl }}
- name: S3_ENDPOINT
  value: {{ $os.endpointUrl | quote }}
{{- end }}
{{- else }}
- name: CLOUDSDK_CONFIG
  value: /tmp/gcloud
{{- end }}
- name: SYNC_INTERVAL_S
  value: {{ $os.syncSidecar.intervalSeconds | quote }}
{{- with $os.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
KServe: "true" when the InferenceService runs on Knative (deploymentMode Serverless, called Knative by newer
KServe releases), empty otherwise. Knative refuses a few pod and container fields the Deployment sets: the
pod spec below leaves them out in that mode.
*/}}
{{- define "query-tower.knative" -}}
{{- if and .Values.kserve.enabled (has .Values.kserve.deploymentMode (list "Serverless" "Knative")) }}true{{ end }}
{{- end }}

{{/*
Name of the server's container port: `http` for the Deployment (the Service, the NetworkPolicy and the probes
refer to it), `http1` under KServe (the name Knative and KServe expect for an HTTP/1.1 port).
*/}}
{{- define "query-tower.portName" -}}
{{- if .Values.kserve.enabled }}http1{{ else }}http{{ end }}
{{- end }}

{{/*
Checks on the bundle volume values, run by whichever workload the chart renders.
*/}}
{{- define "query-tower.validateBundles" -}}
{{- $bundles := .Values.bundles }}
{{- if and (eq $bundles.source "objectStore") (not $bundles.objectStore.uri) }}
{{- fail "bundles.objectStore.uri is required when bundles.source is objectStore" }}
{{- end }}
{{- if and (eq $bundles.source "pvc") (not $bundles.pvc.claimName) }}
{{- fail "bundles.pvc.claimName is required when bundles.source is pvc" }}
{{- end }}
{{- end }}

{{/*
Labels of the server pods: the chart labels (selector labels included) and podLabels.
*/}}
{{- define "query-tower.podLabels" -}}
{{ include "query-tower.labels" . }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Annotations of the server pods.
*/}}
{{- define "query-tower.podAnnotations" -}}
# A changed server configuration rolls the pods.
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/feature-store: {{ include (print .Template.BasePath "/feature-store-configmap.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The server container: image, args, env, probes, security context, resources and mounts. The one definition
used by the Deployment (container `server`, port `http`) and by the KServe InferenceService (container
`kserve-container`, port `http1`). On Knative the preStop hook is left out: Knative refuses `lifecycle` and
installs its own drain hook, which holds the container until the queue-proxy has drained the requests.
*/}}
{{- define "query-tower.serverContainer" -}}
{{- $bundles := .Values.bundles }}
{{- $port := include "query-tower.portName" . }}
{{- $adminSecret := include "query-tower.adminTokenSecretName" . -}}
name: {{ ternary "kserve-container" "server" .Values.kserve.enabled }}
image: {{ include "query-tower.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args:
  - serve
  - --bundles
  - {{ $bundles.mountPath | quote }}
  - --host
  - "0.0.0.0"
  - --port
  - {{ .Values.server.port | quote }}
  {{- range .Values.server.extraArgs }}
  - {{ . | quote }}
  {{- end }}
ports:
  - name: {{ $port }}
    containerPort: {{ .Values.server.port }}
    protocol: TCP
envFrom:
  - configMapRef:
      name: {{ include "query-tower.fullname" . }}
env:
  - name: HOME
    value: /tmp
  {{- if include "query-tower.featureStoreRedisEnv" . }}
  # Feast expands it in feature_store.yaml: the connection string stays in the Secret.
  - name: REDIS_CONNECTION
    valueFrom:
      secretKeyRef:
        name: {{ .Values.featureStore.onlineStore.redis.existingSecret }}
        key: {{ .Values.featureStore.onlineStore.redis.secretKey }}
  {{- end }}
  {{- if $adminSecret }}
  - name: EBR_ADMIN_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ $adminSecret }}
        key: {{ .Values.adminToken.secretKey }}
  {{- end }}
  {{- with .Values.server.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ $port }}
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ $port }}
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
  successThreshold: {{ .Values.probes.readiness.successThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ $port }}
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
{{- if and (gt (int .Values.preStopSleepSeconds) 0) (not (include "query-tower.knative" .)) }}
lifecycle:
  preStop:
    exec:
      command: ["sleep", {{ .Values.preStopSleepSeconds | quote }}]
{{- end }}
securityContext:
  {{- include "query-tower.containerSecurityContext" . | nindent 2 }}
resources:
  {{- toYaml .Values.resources | nindent 2 }}
volumeMounts:
  - name: bundles
    mountPath: {{ $bundles.mountPath }}
    readOnly: true
    {{- if and (eq $bundles.source "pvc") $bundles.pvc.subPath }}
    subPath: {{ $bundles.pvc.subPath }}
    {{- end }}
  - name: tmp
    mountPath: /tmp
  {{- with .Values.featureStore }}
  {{- if .enabled }}
  - name: feature-store
    mountPath: {{ .mountPath }}
    readOnly: true
  {{- $volume := include "query-tower.featureRegistryVolume" $ }}
  {{- if $volume }}
  - name: {{ $volume }}
    mountPath: {{ .registry.pvc.mountPath }}
    readOnly: true
    {{- with .registry.pvc.subPath }}
    subPath: {{ . }}
    {{- end }}
  {{- end }}
  {{- end }}
  {{- end }}
{{- end }}

{{/*
A bundle sync container: the init container (loop false) or the hot-swap sidecar (loop true).
Argument: a dict with "root" (the chart context) and "loop".
*/}}
{{- define "query-tower.syncContainer" -}}
{{- $root := .root }}
{{- $os := $root.Values.bundles.objectStore -}}
name: {{ ternary "bundle-sync" "bundle-sync-init" .loop }}
image: "{{ $os.image.repository }}:{{ $os.image.tag }}"
imagePullPolicy: {{ $os.image.pullPolicy }}
command: ["/bin/sh", "-ec"]
args:
  - |
    {{- include "query-tower.syncScript" (dict "root" $root "loop" .loop) | nindent 4 }}
env:
  {{- include "query-tower.syncEnv" $root | nindent 2 }}
{{- with $os.credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ . }}
{{- end }}
securityContext:
  {{- include "query-tower.containerSecurityContext" $root | nindent 2 }}
resources:
  {{- toYaml (ternary $os.syncSidecar.resources $os.resources .loop) | nindent 2 }}
volumeMounts:
  - name: bundles
    mountPath: {{ $root.Values.bundles.mountPath }}
  - name: tmp
    mountPath: /tmp
{{- end }}

{{/*
The server pod spec: identity, security context, containers, volumes and scheduling. The one definition used
by the Deployment's pod template and by the InferenceService's predictor (KServe inlines the PodSpec there).
On Knative terminationGracePeriodSeconds is left out: Knative refuses it and derives it from the revision's
request timeout.
*/}}
{{- define "query-tower.podSpec" -}}
{{- $bundles := .Values.bundles }}
{{- $os := $bundles.objectStore }}
{{- $objectStore := eq $bundles.source "objectStore" -}}
serviceAccountName: {{ include "query-tower.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if not (include "query-tower.knative" .) }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .Values.securityContext.runAsUser }}
  runAsGroup: {{ .Values.securityContext.runAsGroup }}
  fsGroup: {{ .Values.securityContext.fsGroup }}
  seccompProfile:
    type: RuntimeDefault
{{- if $objectStore }}
initContainers:
  - {{ include "query-tower.syncContainer" (dict "root" . "loop" false) | indent 4 | trim }}
{{- end }}
containers:
  - {{ include "query-tower.serverContainer" . | indent 4 | trim }}
  {{- if and $objectStore $os.syncSidecar.enabled }}
  - {{ include "query-tower.syncContainer" (dict "root" . "loop" true) | indent 4 | trim }}
  {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ .Values.tmpSizeLimit }}
  {{- if $objectStore }}
  - name: bundles
    emptyDir:
      sizeLimit: {{ $os.sizeLimit }}
  {{- else }}
  - name: bundles
    persistentVolumeClaim:
      claimName: {{ $bundles.pvc.claimName }}
      readOnly: {{ $bundles.pvc.readOnly }}
  {{- end }}
  {{- if .Values.featureStore.enabled }}
  - name: feature-store
    configMap:
      name: {{ include "query-tower.featureStoreConfigMapName" . }}
      items:
        - key: feature_store.yaml
          path: feature_store.yaml
  {{- if eq (include "query-tower.featureRegistryVolume" .) "feature-registry" }}
  - name: feature-registry
    persistentVolumeClaim:
      claimName: {{ .Values.featureStore.registry.pvc.claimName }}
      readOnly: true
  {{- end }}
  {{- end }}
{{- if .Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ .Values.topologySpread.maxSkew }}
    topologyKey: {{ .Values.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ .Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "query-tower.selectorLabels" . | nindent 8 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Name of the ConfigMap holding the server's feature_store.yaml: featureStore.existingConfigMap, or the one the
chart renders from featureStore.* (feature-store-configmap.yaml).
*/}}
{{- define "query-tower.featureStoreConfigMapName" -}}
{{- if .Values.featureStore.existingConfigMap }}
{{- .Values.featureStore.existingConfigMap }}
{{- else }}
{{- printf "%s-feature-store" (include "query-tower.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
"true" when the server gets REDIS_CONNECTION from the Redis Secret: a store is enabled, its online store is
Redis and a Secret is named (always the case for the rendered file, which the validation checks).
*/}}
{{- define "query-tower.featureStoreRedisEnv" -}}
{{- $fs := .Values.featureStore }}
{{- if and $fs.enabled (eq $fs.onlineStore.type "redis") $fs.onlineStore.redis.existingSecret }}true{{ end }}
{{- end }}

{{/*
Volume the registry claim is mounted from: empty (no claim), `bundles` (the claim is the bundle volume's own,
mounted a second time with the registry's subPath) or `feature-registry` (a volume of its own).
*/}}
{{- define "query-tower.featureRegistryVolume" -}}
{{- $fs := .Values.featureStore }}
{{- $bundles := .Values.bundles }}
{{- if and $fs.enabled $fs.registry.pvc.claimName }}
{{- if and (eq $bundles.source "pvc") (eq $fs.registry.pvc.claimName $bundles.pvc.claimName) }}bundles{{ else }}feature-registry{{ end }}
{{- end }}
{{- end }}

{{/*
Whether a file path of the feature store lies on a volume the server mounts: "true" when it is under the
registry claim's mountPath (with a claim) or under bundles.mountPath.
Argument: a dict with "root" (the chart context) and "path".
*/}}
{{- define "query-tower.featureStoreFileMounted" -}}
{{- $fs := .root.Values.featureStore }}
{{- $mounts := list .root.Values.bundles.mountPath }}
{{- if $fs.registry.pvc.claimName }}
{{- $mounts = append $mounts $fs.registry.pvc.mountPath }}
{{- end }}
{{- range $mounts }}
{{- if hasPrefix (printf "%s/" (trimSuffix "/" .)) $.path }}true{{ end }}
{{- end }}
{{- end }}

{{/*
Checks on featureStore.*: every failure names the value to fix.
*/}}
{{- define "query-tower.validateFeatureStore" -}}
{{- $fs := .Values.featureStore }}
{{- if $fs.enabled }}
{{- $mountPath := trimSuffix "/" $fs.mountPath }}
{{- $taken := list (trimSuffix "/" .Values.bundles.mountPath) "/tmp" }}
{{- if $fs.registry.pvc.claimName }}
{{- $taken = append $taken (trimSuffix "/" $fs.registry.pvc.mountPath) }}
{{- end }}
{{- if has $mountPath $taken }}
{{- fail (printf "featureStore.mountPath %s is already a mount of the server (bundles.mountPath, /tmp or featureStore.registry.pvc.mountPath)" $fs.mountPath) }}
{{- end }}
{{- if and $fs.registry.pvc.claimName (has (trimSuffix "/" $fs.registry.pvc.mountPath) (list (trimSuffix "/" .Values.bundles.mountPath) "/tmp")) }}
{{- fail (printf "featureStore.registry.pvc.mountPath %s is already a mount of the server (bundles.mountPath or /tmp)" $fs.registry.pvc.mountPath) }}
{{- end }}
{{- if eq $fs.onlineStore.type "redis" }}
{{- if not $fs.onlineStore.redis.existingSecret }}
{{- if not $fs.existingConfigMap }}
{{- fail "featureStore.onlineStore.redis.existingSecret is required with onlineStore.type redis: the Secret holding the Redis connection string (or set featureStore.enabled=false)" }}
{{- end }}
{{- else if not $fs.onlineStore.redis.secretKey }}
{{- fail "featureStore.onlineStore.redis.secretKey is required with featureStore.onlineStore.redis.existingSecret" }}
{{- end }}
{{- else if gt (int .Values.server.searchWorkers) 1 }}
{{- fail (printf "server.searchWorkers %d needs a thread-safe online store: featureStore.onlineStore.type redis (sqlite serves one worker)" (int .Values.server.searchWorkers)) }}
{{- end }}
{{- if not $fs.existingConfigMap }}
{{- $registry := $fs.registry.path }}
{{- if not (regexMatch "^(s3|gs)://[^/]+/.+" $registry) }}
{{- if not (include "query-tower.featureStoreFileMounted" (dict "root" . "path" $registry)) }}
{{- fail (printf "featureStore.registry.path %q is neither an s3:// or gs:// URI nor a file under featureStore.registry.pvc.mountPath (with a claim) or bundles.mountPath" $registry) }}
{{- end }}
{{- end }}
{{- if eq $fs.onlineStore.type "sqlite" }}
{{- if not (include "query-tower.featureStoreFileMounted" (dict "root" . "path" $fs.onlineStore.sqlite.path)) }}
{{- fail (printf "featureStore.onlineStore.sqlite.path %q is not a file under featureStore.registry.pvc.mountPath (with a claim) or bundles.mountPath" $fs.onlineStore.sqlite.path) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The server's feature_store.yaml, rendered from featureStore.*. Feast expands environment variables when it
reads the file (os.path.expandvars in feast.repo_config.load_repo_config): REDIS_CONNECTION, set from the
Secret, becomes the connection string; a literal block keeps any character of it (#, quotes, colons) intact.
*/}}
{{- define "query-tower.featureStoreYaml" -}}
{{- $fs := .Values.featureStore -}}
# Rendered by the query-tower chart from featureStore.* in values.yaml: the server's Feast repository.
project: {{ $fs.project }}
provider: local
registry:
  registry_type: file
  path: {{ $fs.registry.path | quote }}
  cache_ttl_seconds: {{ int $fs.registry.cacheTtlSeconds }}
online_store:
{{- if eq $fs.onlineStore.type "redis" }}
  type: redis
  redis_type: {{ $fs.onlineStore.redis.redisType }}
  connection_string: |-
    ${REDIS_CONNECTION}
{{- else }}
  type: sqlite
  path: {{ $fs.onlineStore.sqlite.path | quote }}
{{- end }}
offline_store:
  type: file
entity_key_serialization_version: {{ int $fs.entityKeySerializationVersion }}
{{- end }}
