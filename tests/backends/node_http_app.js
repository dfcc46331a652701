// Node's bare http module: the app routes on req.url as sent (no decoding,
// no dot segments resolved), case-insensitively, as hand-written routers do.
const http = require('http');

http
  .createServer((req, res) => {
    const path = req.url.split('?')[0].toLowerCase();
    let resource = 'public';
    if (path === '/admin' || path.startsWith('/admin/')) resource = 'admin';
    else if (path === '/reports' || path.startsWith('/reports/')) resource = 'reports';
    res.setHeader('content-type', 'text/plain');
    res.end(`served:${resource} method:${req.method} subject:${req.headers['x-auth-subject'] || ''}\n`);
  })
  .listen(Number(process.argv[2]), '127.0.0.1');
