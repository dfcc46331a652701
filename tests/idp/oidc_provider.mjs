// A real OpenID Provider (node oidc-provider) on loopback for the tests.
//
//   PORT=0 node tests/idp/oidc_provider.mjs
//   -> prints exactly one line "listening http://127.0.0.1:<port>" once it serves
//
// Issuer: http://127.0.0.1:<port> (discovery at /.well-known/openid-configuration,
// keys at /jwks, token endpoint at /token). A fresh RSA key signs, so every
// run has keys no test has seen before.
//
// Environment (all optional):
//   PORT            port to listen on; 0 (default) picks a free one
//   RESOURCE        the one resource server (RFC 8707) it issues JWTs for;
//                   default https://api.jwtgate.test
//   RESOURCE_SCOPE  scopes that resource server knows; default "read write"
//   TOKEN_TTL       access token lifetime in seconds; default 600
//   INTROSPECTION   "1": RFC 7662 introspection at /token/introspection and
//                   RFC 7009 revocation at /token/revocation (both clients
//                   may use them); opaque client-credentials tokens then
//                   carry sub "svc-<client_id>" and the claim
//                   "https://jwtgate.test/tenant": "acme". GET /__introspections
//                   answers {"calls": N}, the introspection requests so far.
//   INTROSPECTION_DELAY_MS  with INTROSPECTION: each introspection answer
//                   waits this long first (single-flight tests); default 0
//
// Clients (fixed, so tests and docs can name them):
//   jwtgate-post  / secret post-secret      client_secret_post
//   jwtgate-basic / secret b@sic:secret+/%  client_secret_basic
// both with the client_credentials grant only. The Basic client's secret has
// the characters RFC 6749 §2.3.1 makes a client form-encode before Basic
// encoding (oidc-provider decodes them), so a client that skips it fails.
//
// Without a resource= parameter oidc-provider issues an opaque access
// token; with resource=$RESOURCE a JWT whose aud is $RESOURCE. To add
// behaviour later (more clients), extend `configuration` below, switched
// by a new environment variable.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.PORT ?? 0);
const resource = process.env.RESOURCE ?? 'https://api.jwtgate.test';
const resourceScope = process.env.RESOURCE_SCOPE ?? 'read write';
const tokenTtl = Number(process.env.TOKEN_TTL ?? 600);
const introspection = process.env.INTROSPECTION === '1';
const introspectionDelay = Number(process.env.INTROSPECTION_DELAY_MS ?? 0);
let introspectionCalls = 0;

export const CLIENTS = [
  { client_id: 'jwtgate-post', client_secret: 'post-secret', token_endpoint_auth_method: 'client_secret_post' },
  { client_id: 'jwtgate-basic', client_secret: 'b@sic:secret+/%', token_endpoint_auth_method: 'client_secret_basic' },
].map((client) => ({
  ...client,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: resourceScope,
}));

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

function configuration() {
  return {
    clients: CLIENTS,
    // The clients' scope values must be ones the server knows.
    scopes: ['openid', 'offline_access', ...resourceScope.split(' ')],
    jwks: { keys: [{ ...signingKey, alg: 'RS256', use: 'sig' }] },
    features: {
      // The interactive login pages are not used: client credentials only.
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: introspection },
      revocation: { enabled: introspection },
      resourceIndicators: {
        enabled: true,
        // No resource asked for: no default, so the token stays opaque.
        defaultResource: () => undefined,
        getResourceServerInfo(_ctx, resourceIndicator) {
          if (resourceIndicator !== resource) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: resourceScope,
            audience: resource,
            accessTokenFormat: 'jwt',
            accessTokenTTL: tokenTtl,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: { ClientCredentials: tokenTtl },
    ...(introspection ? introspectionConfiguration() : {}),
  };
}

// RFC 7662 and RFC 7009, and the identity an introspected token shows.
function introspectionConfiguration() {
  return {
    extraTokenClaims(_ctx, token) {
      if (token.kind === 'ClientCredentials' && !token.aud) {
        return { sub: `svc-${token.clientId}`, 'https://jwtgate.test/tenant': 'acme' };
      }
      return undefined;
    },
  };
}

// Listen first: with PORT=0 the issuer URL is known only once bound.
const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration());
  // Failures a test would otherwise only see as a 500 or 400.
  for (const event of ['server_error', 'grant.error']) {
    provider.on(event, (_ctx, error) => console.error(`${event}: ${error.message} ${error.error_description ?? ''}`));
  }
  if (introspection) {
    provider.use(async (ctx, next) => {
      if (ctx.path === '/__introspections') {
        ctx.body = { calls: introspectionCalls };
        return;
      }
      if (ctx.path === '/token/introspection') {
        introspectionCalls += 1;
        if (introspectionDelay > 0) {
          await new Promise((resolve) => setTimeout(resolve, introspectionDelay));
        }
      }
      await next();
    });
  }
  server.on('request', provider.callback());
  console.log(`listening ${issuer}`);
});
