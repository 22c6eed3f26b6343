# Sourced, not run: starts moto server on loopback (installing it on first use) and
# points the AWS SDK at it, the environment every emulator-backed test needs.
# scripts/test and .ci/run source it, so it is written once.
#
#   source scripts/env.sh && cargo test -p spotq-system-tests --test sqs_moto

endpoint=$(scripts/moto.sh start)
export SPOTQ_MOTO_ENDPOINT="$endpoint"
# The protocol tests build their clients the way a worker does: the standard AWS chain,
# with the endpoint override pointing at moto and throwaway credentials.
export AWS_ENDPOINT_URL="$endpoint"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN endpoint
