#!/usr/bin/env bash
# The retry story with curl: create an account, deposit, charge, retry the charge
# with the same Idempotency-Key (replayed, debited once), reuse the key for another
# amount (422), refund, and read the ledger. Then the operations that need no key:
# a PUT sent twice (nothing changes the second time), a PUT with a stale If-Match
# (412), and closing accounts with DELETE. Needs the API running (npm start).
#
#   scripts/demo.sh                      # against http://localhost:3000, demo key
#   API=http://host:3000 API_KEY=sk_... scripts/demo.sh
set -euo pipefail

API=${API:-http://localhost:3000}
API_KEY=${API_KEY:-sk_test_demo}
RUN=$(date +%s)-$RANDOM # fresh keys for every run of this script

bold() { if [ -t 1 ]; then printf '\n\033[1m%s\033[0m\n' "$*"; else printf '\n%s\n' "$*"; fi; }
say() { printf '  %s\n' "$*"; }

# call METHOD PATH [KEY] [BODY]: prints the status line, the headers that matter, and the body.
call() {
  local method=$1 path=$2 key=${3:-} body=${4:-}
  local args=(-s -i -X "$method" "$API$path" -H "Authorization: Bearer $API_KEY")
  [ -n "$key" ] && args+=(-H "Idempotency-Key: $key")
  [ -n "${IF_MATCH:-}" ] && args+=(-H "If-Match: $IF_MATCH")
  [ -n "$body" ] && args+=(-H 'Content-Type: application/json' -d "$body")
  RESPONSE=$(curl "${args[@]}")
  printf '%s\n' "$RESPONSE" | tr -d '\r' | grep -iE '^(HTTP/|location:|idempotent-replayed:|retry-after:|etag:)' | sed 's/^/  < /'
  BODY=$(printf '%s\n' "$RESPONSE" | tr -d '\r' | sed '1,/^$/d')
  printf '  %s\n' "$BODY"
}
field() { printf '%s' "$BODY" | grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | cut -d'"' -f4; }

bold "1. Open an account"
call POST /accounts "demo-$RUN-account" '{"name":"Demo","currency":"USD"}'
ACCOUNT=$(field id)

bold "2. Deposit 100.00 (10000 cents)"
call POST "/accounts/$ACCOUNT/deposits" "demo-$RUN-deposit" '{"amount":10000,"currency":"USD"}'

CHARGE_BODY="{\"accountId\":\"$ACCOUNT\",\"amount\":2500,\"currency\":\"USD\"}"
bold "3. Charge 25.00 with Idempotency-Key demo-$RUN-charge"
call POST /charges "demo-$RUN-charge" "$CHARGE_BODY"
CHARGE=$(field id)

bold "4. The response was lost? Retry with the same key and body"
call POST /charges "demo-$RUN-charge" "$CHARGE_BODY"
say "Same status, same body, Idempotent-Replayed: true. Nothing was charged again."

bold "5. The same key for a different amount"
call POST /charges "demo-$RUN-charge" "{\"accountId\":\"$ACCOUNT\",\"amount\":9999,\"currency\":\"USD\"}"
say "422: a key names one request. Nothing was charged."

bold "6. Refund 10.00 of the charge"
call POST "/charges/$CHARGE/refunds" "demo-$RUN-refund" '{"amount":1000}'

bold "7. The balance: 10000 - 2500 + 1000 = 8500, the charge counted once"
call GET "/accounts/$ACCOUNT"

bold "8. The ledger, newest first: it adds up to the balance"
call GET "/accounts/$ACCOUNT/ledger"

bold "9. Rename the account with PUT: no key, it sets a value"
RENAME='{"name":"Demo, renamed","metadata":{"owner":"demo"}}'
call PUT "/accounts/$ACCOUNT" "" "$RENAME"
ETAG=$(printf '%s\n' "$RESPONSE" | tr -d '\r' | grep -i '^etag:' | cut -d' ' -f2)

bold "10. Send the same PUT again"
call PUT "/accounts/$ACCOUNT" "" "$RENAME"
say "The same 200 and the same ETag ($ETAG): setting a name twice is setting it once."

bold "11. A PUT that read the account before those changes (If-Match: \"1\")"
IF_MATCH='"1"' call PUT "/accounts/$ACCOUNT" "" '{"name":"Lost update"}'
say "412: the account changed since; nothing was overwritten."

bold "12. Close the account with DELETE: it still holds 8500"
call DELETE "/accounts/$ACCOUNT"
say "409: only an empty account can be closed."

bold "13. Close an empty account, twice"
call POST /accounts "demo-$RUN-spare" '{"name":"Spare","currency":"USD"}'
SPARE=$(field id)
call DELETE "/accounts/$SPARE"
call DELETE "/accounts/$SPARE"
say "204 both times: closing twice is closing once."
