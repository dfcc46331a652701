<?php
// PHP's built-in server (php -S) as a front controller: every request runs
// this script, which routes on REQUEST_URI's path and reads the caller
// from $_SERVER['HTTP_X_AUTH_SUBJECT'] (PHP folds '-', '_' and '.' in
// header names into '_').
$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '');
$method = $_SERVER['REQUEST_METHOD'];
if ($path === '/admin' || str_starts_with($path, '/admin/')) {
    $resource = 'admin';
} elseif ($path === '/reports' || str_starts_with($path, '/reports/')) {
    $resource = 'reports';
} else {
    $resource = 'public';
}
$subject = $_SERVER['HTTP_X_AUTH_SUBJECT'] ?? '';
header('Content-Type: text/plain');
echo "served:$resource method:$method subject:$subject\n";
