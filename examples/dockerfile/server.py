from http.server import BaseHTTPRequestHandler, HTTPServer

class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello from a Dockerfile-provisioned VM\n")

HTTPServer(("", 3000), Hello).serve_forever()
