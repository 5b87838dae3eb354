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
