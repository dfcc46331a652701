// oauth2-mock-server on loopback for the tests: it answers any client, with
// or without a secret, and signs a JWT whose aud is the form field `aud`
// and whose scope is the form field `scope`.
//
//   PORT=0 node tests/idp/mock_server.mjs
//   -> prints exactly one line "listening http://127.0.0.1:<port>" once it serves
//
// Issuer: http://127.0.0.1:<port> (discovery at /.well-known/openid-configuration,
// keys at /jwks, token endpoint at /token), signed by a fresh RS256 key.
//
// Environment: PORT, the port to listen on; 0 (default) picks a free one.
import { OAuth2Server } from 'oauth2-mock-server';

const port = Number(process.env.PORT ?? 0);
const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
await server.start(port, '127.0.0.1');
// Its own default issuer says "localhost"; the tests address 127.0.0.1.
server.issuer.url = `http://127.0.0.1:${server.address().port}`;
console.log(`listening ${server.issuer.url}`);
