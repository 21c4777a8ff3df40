"""Tool-call latency on one keep-alive connection to the demo MCP server (loopback).

Usage: keepalive_latency.py ISSUER MCP_URL CALLS (see BENCHMARKS.md). Uses the demo
provider's resource-server client for a `read` token.
"""
import base64, http.client, json, statistics, sys, time, urllib.parse, urllib.request

issuer, mcp_url, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
form = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "read", "resource": mcp_url}).encode()
req = urllib.request.Request(issuer + "/token", data=form)
req.add_header("Authorization", "Basic " + base64.b64encode(b"mcp-resource-server:resource-server-secret").decode())
token = json.load(urllib.request.urlopen(req))["access_token"]
u = urllib.parse.urlparse(mcp_url)
conn = http.client.HTTPConnection(u.hostname, u.port)
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json",
           "Accept": "application/json, text/event-stream"}
def post(message, session=None):
    h = dict(headers)
    if session: h["Mcp-Session-Id"] = session
    conn.request("POST", u.path, body=json.dumps(message).encode(), headers=h)
    r = conn.getresponse(); body = r.read()
    return r, body
r, _ = post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
session = r.getheader("Mcp-Session-Id")
post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
times = []
for i in range(calls):
    t = time.perf_counter()
    r, body = post({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": {"name": "read_data", "arguments": {}}}, session)
    assert r.status == 200 and b"notes" in body, (r.status, body)
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(f"{calls} tools/call on one keep-alive connection: median {statistics.median(times):.2f} ms, p90 {times[int(calls*0.9)]:.2f} ms, max {times[-1]:.2f} ms")
