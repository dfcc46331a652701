// Express 4 as its users write it: method-override for HTML forms and
// clients that cannot send DELETE, a router mounted at /admin.
const express = require('express');
const methodOverride = require('method-override');

const app = express();
app.use(express.urlencoded({ extended: false }));
app.use(methodOverride('X-HTTP-Method-Override'));
app.use(methodOverride((req) => {
  if (req.body && typeof req.body === 'object' && '_method' in req.body) {
    const method = req.body._method;
    delete req.body._method;
    return method;
  }
}));

const answer = (resource) => (req, res) => {
  res.type('text/plain').send(`served:${resource} method:${req.method} subject:${req.headers['x-auth-subject'] || ''}\n`);
};

app.delete('/items/:id', answer('delete-item'));
app.post('/items/:id', answer('post-item'));
app.use('/admin', answer('admin'));
app.use('/reports', answer('reports'));
app.use(answer('public'));

app.listen(Number(process.argv[2]), '127.0.0.1', () => console.log('ready'));
