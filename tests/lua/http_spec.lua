-- flare.http against a small local Python server started by this spec.
local http = flare.http

local SERVER = [[
import http.server, json, os, socketserver, sys, threading, time, urllib.parse
owner = int(sys.argv[1])
def watch():
    # Lives as long as the flare process that started it (at most two minutes).
    start = time.time()
    while time.time() - start < 120:
        try:
            os.kill(owner, 0)
        except OSError:
            break
        time.sleep(0.2)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, status, body, extra=()):
        body = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Client-Port", str(self.client_address[1]))
        for k, v in extra: self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        if u.path == "/closed-port":
            import socket
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            probe.close()
            return self.reply(200, str(port))
        if u.path == "/hello": return self.reply(200, "hello",
          [("X-Test", "yes"), ("X-Multi", "a"), ("X-Multi", "b")])
        if u.path == "/slow":
            time.sleep(int(urllib.parse.parse_qs(u.query)["ms"][0]) / 1000)
            return self.reply(200, "slow")
        self.reply(404, "no such path")
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n).decode()
        self.reply(200, json.dumps({"method": self.command, "body": body,
          "probe": self.headers.get("X-Probe")}))
    do_PUT = do_POST
    do_DELETE = do_POST
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
]]

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local ffi = require("ffi")
pcall(ffi.cdef, "int getpid(void);")

-- Runs in the background and exits once this process is gone.
local function start_server()
  local port_file = os.tmpname()
  os.execute("python3 -u -c " .. sh_quote(SERVER) .. " " .. ffi.C.getpid() .. " >" ..
    port_file .. " 2>&1 &")
  local port
  for _ = 1, 200 do
    local f = io.open(port_file)
    port = f and tonumber(f:read("*l"))
    if f then f:close() end
    if port then break end
    os.execute("sleep 0.05")
  end
  os.remove(port_file)
  assert(port, "the test server did not start")
  return "http://127.0.0.1:" .. port
end

local base = start_server()

-- A loopback port nothing listens on (the server binds one and closes it).
local function closed_port_url()
  return "http://127.0.0.1:" .. http.request{url = base .. "/closed-port"}.body .. "/x"
end

describe("flare.http.request", function()
  it("returns status, body and lower-cased headers", function()
    local r = http.request{url = base .. "/hello"}
    assert.equal(200, r.status)
    assert.equal("hello", r.body)
    assert.equal("yes", r.headers["x-test"])
    assert.equal("a, b", r.headers["x-multi"])
    assert.equal("5", r.headers["content-length"])
  end)

  it("returns non-2xx answers as responses", function()
    local r = http.request{url = base .. "/missing"}
    assert.equal(404, r.status)
    assert.equal("no such path", r.body)
  end)

  it("sends the method, body and headers", function()
    local r = http.request{method = "put", url = base .. "/echo", body = '{"x":1}',
      headers = {["X-Probe"] = "p1", ["Content-Type"] = "application/json"}, timeout_s = 5}
    assert.same({method = "PUT", body = '{"x":1}', probe = "p1"}, flare.json.decode(r.body))
  end)

  it("reuses one keep-alive connection for sequential requests", function()
    local ports = {}
    for i = 1, 5 do ports[i] = http.request{url = base .. "/hello"}.headers["x-client-port"] end
    for i = 2, 5 do assert.equal(ports[1], ports[i]) end
  end)
end)

describe("flare.http.submit and flare.wait_all", function()
  it("runs requests concurrently and returns responses in order", function()
    local handles = {}
    for i = 1, 8 do
      handles[i] = http.submit{method = "POST", url = base .. "/echo", body = tostring(i)}
    end
    handles[9] = http.submit{url = base .. "/slow?ms=50"}
    assert.equal(false, handles[9]:done())
    local responses = flare.wait_all(handles)
    assert.equal(9, #responses)
    for i = 1, 8 do assert.equal(tostring(i), flare.json.decode(responses[i].body).body) end
    assert.equal("slow", responses[9].body)
    assert.equal(true, handles[9]:done())
  end)

  it("lets a handle be waited for more than once", function()
    local h = http.submit{url = base .. "/hello"}
    assert.equal("hello", h:wait().body)
    assert.equal("hello", h:wait().body)
  end)

  it("rejects a list item that is not a handle", function()
    assert.error_matches(function() flare.wait_all({http.submit{url = base .. "/hello"}, 5}) end,
      "flare%.wait_all: handles%[2%] is a number, not a handle")
  end)
end)

describe("flare.http errors", function()
  it("raises a structured, retryable error when the connection is refused", function()
    local ok, err = pcall(http.request, {url = closed_port_url()})
    assert.equal(false, ok)
    assert.equal("table", type(err))
    assert.equal("connect_failed", err.code)
    assert.equal(true, err.retryable)
    assert.matches("^GET http://127%.0%.0%.1:%d+/x", err.message)
  end)

  it("raises timeout when the answer is too slow", function()
    local err = assert.error_matches(function()
      http.request{url = base .. "/slow?ms=2000", timeout_s = 0.2}
    end, "timeout")
    assert.equal("timeout", err.code)
  end)

  it("raises the transport error from handle:wait and wait_all", function()
    local h = http.submit{url = closed_port_url()}
    assert.error_matches(function() h:wait() end, "connect_failed")
    assert.error_matches(function() flare.wait_all({h}) end, "connect_failed")
  end)

  it("refuses a URL whose scheme is not http or https", function()
    local err = assert.error_matches(function() http.request{url = "ftp://example.com/f"} end,
      'bad scheme "ftp"')
    assert.equal("bad_url", err.code)
    assert.equal(false, err.retryable)
  end)

  it("refuses a header containing a newline without echoing its value", function()
    local err = assert.error_matches(function()
      http.request{url = base .. "/hello", headers = {["X-Api-Key"] = "sk-secret\r\nX-Evil: 1"}}
    end, 'header "X%-Api%-Key" contains a newline')
    assert.falsy(err.message:find("sk%-secret"))
  end)

  it("never puts header values in transport errors", function()
    local ok, err = pcall(http.request, {url = closed_port_url(),
      headers = {Authorization = "Bearer sk-secret-123", ["X-Api-Key"] = "sk-secret-123"}})
    assert.equal(false, ok)
    assert.falsy(err.message:find("secret"))
  end)

  it("names unknown options, wrong types and missing ones", function()
    assert.error_matches(function() http.request{urll = base} end,
      "unknown option 'urll' %(did you mean 'url'%?%)")
    assert.error_matches(function() http.request{url = base, timeout_s = "5"} end,
      "option 'timeout_s' must be a number, got string")
    assert.error_matches(function() http.request{url = 5} end, "option 'url' must be a string")
    assert.error_matches(function() http.request{method = "GET"} end, "option 'url' is required")
    assert.error_matches(function() http.request{url = base, headers = {X = {}}} end,
      "option 'headers' must map names to strings, got table for 'X'")
    assert.error_matches(function() http.request("http://x") end,
      "argument 'opts' must be a table, got string")
  end)
end)

describe("interrupts", function()
  it("SIGINT during a request raises an interrupted error", function()
    os.execute("(sleep 0.3; kill -INT " .. ffi.C.getpid() .. ") >/dev/null 2>&1 &")
    local err = assert.error_matches(function()
      http.request{url = base .. "/slow?ms=5000", timeout_s = 10}
    end, "interrupted")
    assert.equal("interrupted", err.code)
    -- The client still works afterwards.
    assert.equal("hello", http.request{url = base .. "/hello"}.body)
  end)
end)
