# Rack as Rails and Sinatra use it: Rack::MethodOverride turns a POST
# form's _method into the request method before the app routes.
use Rack::MethodOverride

run lambda { |env|
  path = env['PATH_INFO']
  method = env['REQUEST_METHOD']
  resource =
    if path =~ %r{\A/items/[^/]+\z}
      method == 'DELETE' ? 'delete-item' : 'post-item'
    elsif path == '/admin' || path.start_with?('/admin/')
      'admin'
    elsif path == '/reports' || path.start_with?('/reports/')
      'reports'
    else
      'public'
    end
  body = "served:#{resource} method:#{method} subject:#{env['HTTP_X_AUTH_SUBJECT']}\n"
  [200, { 'content-type' => 'text/plain' }, [body]]
}
