// A real DPoP client (npm `dpop`, panva) for the tests, driven line by line.
//
//   ISSUER=http://127.0.0.1:PORT node tests/idp/dpop_client.mjs
//
// At start it makes two key pairs, "A" (ES256) and "B" (ES256), and asks the
// issuer's token endpoint (oidc-provider, tests/idp/oidc_provider.mjs) for a
// client-credentials access token bound to key A: a DPoP proof for
// POST ISSUER/token, client jwtgate-post / post-secret, resource
// https://api.jwtgate.test. It prints one line:
//   {"token": "...", "token_type": "DPoP", "jkt": "<thumbprint of A>"}
// (or {"error": ...} and exits 1).
//
// Then, for each line read on stdin, a JSON object
//   {"key": "A"|"B", "htm": "GET", "htu": "http://…", "token": "…"|null, "nonce": "…"|null}
// it prints one line {"proof": "<DPoP proof JWT>"}: signed by that key, for
// that method and URL, with ath of that token and that nonce when given.
import { createInterface } from 'node:readline';
import { calculateThumbprint, generateKeyPair, generateProof } from 'dpop';

const issuer = process.env.ISSUER;
const resource = process.env.RESOURCE ?? 'https://api.jwtgate.test';
const keys = { A: await generateKeyPair('ES256'), B: await generateKeyPair('ES256') };

async function boundToken() {
  const tokenUrl = `${issuer}/token`;
  const body = new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: 'jwtgate-post',
    client_secret: 'post-secret',
    scope: 'read',
    resource,
  });
  const ask = async (nonce) => fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await generateProof(keys.A, tokenUrl, 'POST', nonce) },
    body,
  });
  let answer = await ask();
  // An authorization server may ask for its own nonce first (RFC 9449 §8).
  if (answer.status === 400 && answer.headers.get('dpop-nonce')) {
    answer = await ask(answer.headers.get('dpop-nonce'));
  }
  const json = await answer.json();
  if (!answer.ok) {
    throw new Error(`token endpoint answered ${answer.status}: ${JSON.stringify(json)}`);
  }
  return json;
}

try {
  const token = await boundToken();
  const jkt = await calculateThumbprint(keys.A.publicKey);
  console.log(JSON.stringify({ token: token.access_token, token_type: token.token_type, jkt }));
} catch (error) {
  console.log(JSON.stringify({ error: error.message }));
  process.exit(1);
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const ask = JSON.parse(line);
  const proof = await generateProof(keys[ask.key], ask.htu, ask.htm, ask.nonce ?? undefined, ask.token ?? undefined);
  console.log(JSON.stringify({ proof }));
}
