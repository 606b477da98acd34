#!/bin/bash
# LocalStack READY hook: deploy template.yaml (the convlog stack) from the bundle that
# `python localstack/build_bundle.py` wrote to localstack/build (mounted at /opt/convlog).
# Progress: `docker compose logs localstack`; status: curl localhost:4566/_localstack/init/ready
set -euo pipefail

BUNDLE=/opt/convlog/build
STACK="${CONVLOG_STACK:-convlog}"
TABLE="${CONVLOG_TABLE:-agent_sessions}"
BUCKET="${CONVLOG_ARTIFACT_BUCKET:-convlog-artifacts}"
PACKAGED=/tmp/convlog-packaged.yaml
# `cloudformation package` uploads through its own S3 client, which ignores the
# --endpoint-url that awslocal adds; the standard variable points it at LocalStack too.
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://localhost:4566}"

if [ ! -f "$BUNDLE/lambda/stream_handlers/projector.py" ] || [ ! -f "$BUNDLE/template.yaml" ]; then
  echo "convlog: no bundle in $BUNDLE; run 'python localstack/build_bundle.py' and restart" >&2
  exit 1
fi

echo "convlog: deploying stack $STACK (table $TABLE)"
awslocal s3api head-bucket --bucket "$BUCKET" 2>/dev/null || awslocal s3 mb "s3://$BUCKET"
# CodeUri "lambda/" is resolved against the template's directory: the bundle's lambda/.
awslocal cloudformation package \
  --template-file "$BUNDLE/template.yaml" \
  --s3-bucket "$BUCKET" \
  --output-template-file "$PACKAGED"
awslocal cloudformation deploy \
  --template-file "$PACKAGED" \
  --stack-name "$STACK" \
  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
  --parameter-overrides "TableName=$TABLE" "LogLevel=${CONVLOG_LOG_LEVEL:-DEBUG}" \
      "TtlSeconds=${CONVLOG_TOOL_TTL:-3600}" \
      "AnchorSchedule=${CONVLOG_ANCHOR_SCHEDULE:-rate(5 minutes)}" \
      "DigestRetentionDays=${CONVLOG_DIGEST_RETENTION_DAYS:-1}" \
  --no-fail-on-empty-changeset
awslocal cloudformation describe-stacks --stack-name "$STACK" \
  --query "Stacks[0].[StackStatus, Outputs]" --output json
echo "convlog: stack $STACK deployed"
