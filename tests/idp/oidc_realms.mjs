// A real multi-tenant OpenID Provider for the tests: one node oidc-provider
// per realm, mounted as Keycloak lays realms out, on one loopback port.
//
//   PORT=0 REALMS=acme,globex node tests/idp/oidc_realms.mjs
//   -> prints exactly one line "listening http://127.0.0.1:<port>" once it serves
//
// Realm NAME: issuer http://127.0.0.1:<port>/realms/NAME, with its own
// discovery document, its own fresh RSA key (kid "NAME-key") at
// /realms/NAME/jwks and its token endpoint at /realms/NAME/token. Any
// other path answers 404.
//
// Client (in every realm): jwtgate-post / post-secret, client_secret_post,
// client_credentials. With resource=https://api.jwtgate.test it issues an
// RS256 JWT access token whose aud is that resource, scopes from "read write".
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.PORT ?? 0);
const realms = (process.env.REALMS ?? 'acme,globex').split(',').filter(Boolean);
const resource = 'https://api.jwtgate.test';
const scope = 'read write';

function configuration(realm) {
  const key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  return {
    clients: [{
      client_id: 'jwtgate-post',
      client_secret: 'post-secret',
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope,
    }],
    scopes: ['openid', ...scope.split(' ')],
    jwks: { keys: [{ ...key, alg: 'RS256', use: 'sig', kid: `${realm}-key` }] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        getResourceServerInfo(_ctx, indicator) {
          if (indicator !== resource) {
            throw new errors.InvalidTarget();
          }
          return { scope, audience: resource, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
        },
      },
    },
  };
}

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  const mounted = new Map();
  for (const realm of realms) {
    const provider = new Provider(`${base}/realms/${realm}`, configuration(realm));
    provider.on('server_error', (_ctx, error) => console.error(`${realm}: server_error: ${error.message}`));
    mounted.set(`/realms/${realm}`, provider.callback());
  }
  server.on('request', (req, res) => {
    const prefix = [...mounted.keys()].find((p) => req.url === p || req.url.startsWith(`${p}/`));
    if (!prefix) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"realm not found"}');
      return;
    }
    // Mounted as Express would: oidc-provider reads its mount path from originalUrl.
    req.originalUrl = req.url;
    req.url = req.url.slice(prefix.length) || '/';
    mounted.get(prefix)(req, res);
  });
  console.log(`listening ${base}`);
});
