#!/usr/bin/env bash
# A walk through Magdi's API with curl: register, sign in, start a
# MagdiCreator conversation, upload a project, ask for tests and download the
# result. Usage: examples/walkthrough.sh [BASE_URL] [PROJECT.zip]
set -euo pipefail
base="${1:-http://127.0.0.1:5000}"
project="${2:-}"
email="walkthrough-$(date +%s)@example.com"
password="walkthrough password"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "== register $email"
curl -fsS -X POST "$base/register" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\",\"confirmPassword\":\"$password\"}"
echo
token=$(curl -fsS -X POST "$base/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}" | json '["token"]')
auth="authorization: Bearer $token"
echo "== signed in as $(curl -fsS "$base/validate-user" -H "$auth" | json '["email"]')"

id=$(curl -fsS -X POST "$base/start_conversation" -H "$auth" -H 'content-type: application/json' \
  -d '{"category":"test_generation"}' | json '["conversation_id"]')
echo "== conversation $id"

if [ -z "$project" ]; then
  project=$(mktemp -d)/shop.zip
  (cd "$(dirname "$0")/../tests/fixtures/shop" && zip -qr "$project" . -x '*__pycache__*')
fi
echo "== upload $project"
curl -fsS "$base/conversation/upload" -H "$auth" -F "conversation_id=$id" -F "files[]=@$project" | json '["workspace_files"]'

echo "== chat"
answer=$(curl -fsS "$base/chat" -H "$auth" -F "conversation_id=$id" -F category=test_generation \
  -F 'message=Write pytest tests for this project.')
reply=$(echo "$answer" | json '["reply"]')
# Only the start of a long reply; sed reads all its input, so no pipe breaks.
sed -n 1,40p <<<"$reply"
zip_id=$(echo "$answer" | python3 -c 'import json,sys; a=json.load(sys.stdin)["artifact"]; print(a["zip_id"] if a else "")')
if [ -z "$zip_id" ]; then
  echo "== the agent wrote no files this turn, so there is nothing to download"
  exit 0
fi

echo "== download $zip_id"
curl -fsS -o magdi-tests.zip "$base/api/download?zip_id=$zip_id" -H "$auth"
unzip -l magdi-tests.zip | sed -n 1,30p
