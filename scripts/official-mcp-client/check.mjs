// Drives the official MCP TypeScript SDK client (`@modelcontextprotocol/sdk`: `Client`,
// `StreamableHTTPClientTransport` and its OAuth support) against the demo MCP server and the
// reference provider, with no special-casing: the SDK itself follows the 401 challenge to the
// RFC 9728 metadata, the RFC 8414 metadata, registers (RFC 7591) or presents a Client ID Metadata
// Document URL as its client_id (`clientMetadataUrl`), authorizes with PKCE and exchanges the
// code. Only the user's part runs here: `redirectToAuthorization` plays the browser (login form,
// consent form, callback) over plain HTTP and hands the code to `transport.finishAuth(code)`.
// The client metadata document is served by this script over https on loopback, with the
// throwaway certificate the shell script made (the provider trusts it as its CIMD CA file).
//
// Usage: MCP_URL=http://127.0.0.1:8080/mcp OAUTH_ISSUER=http://127.0.0.1:9000 \
//        CIMD_CERT_FILE=cert.pem CIMD_KEY_FILE=key.pem node check.mjs
// (normally through ../official-mcp-client.sh, which makes the certificate and starts both
// servers). VERBOSE=1 prints the HTTP trace of every run, not only the first one. Exit status 0
// only if every check passed.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const MCP_URL = process.env.MCP_URL;
const ISSUER = process.env.OAUTH_ISSUER;
const VERBOSE = ['1', 'true', 'yes'].includes(String(process.env.VERBOSE ?? '').toLowerCase());
const REQUEST_TIMEOUT_MS = 20_000;
const OVERALL_TIMEOUT_MS = 90_000;
// Loopback redirect URI: the provider accepts any port for loopback hosts (RFC 8252 §7.3), and
// nothing needs to listen there because the "browser" below never follows the final redirect.
const REDIRECT_URL = 'http://127.0.0.1:33418/callback';

const CIMD_CERT_FILE = process.env.CIMD_CERT_FILE;
const CIMD_KEY_FILE = process.env.CIMD_KEY_FILE;
// Where this script serves the client metadata document (the SDK requires https and a path).
const DOCUMENT_PATH = '/oauth/client-metadata.json';

if (!MCP_URL || !ISSUER || !CIMD_CERT_FILE || !CIMD_KEY_FILE) {
  console.error('MCP_URL, OAUTH_ISSUER, CIMD_CERT_FILE and CIMD_KEY_FILE must be set (see ../official-mcp-client.sh)');
  process.exit(2);
}
setTimeout(() => {
  console.error(`FAIL: the check did not finish within ${OVERALL_TIMEOUT_MS / 1000} s`);
  process.exit(2);
}, OVERALL_TIMEOUT_MS).unref();

const SDK_VERSION = JSON.parse(
  readFileSync(new URL('./node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url), 'utf8'),
).version;

// Tools the demo server also lists, outside the per-tool matrix below: they take each other's
// output (handles) or need MCP 2026-07-28 (delete_note's multi round-trip confirmation).
const HANDLE_TOOLS = ['create_note', 'read_note', 'delete_note'];

// The demo server's policy (examples/demo/src/mcp_server.rs): null = any valid token.
const TOOLS = [
  ['public_info', 'public'],
  ['get_user_profile', null],
  ['read_data', 'read'],
  ['write_data', 'write'],
  ['admin_operation', 'admin'],
  ['list_available_resources', null],
];

// Demo accounts of `oauth-provider --demo`, and how each run's client registers itself.
const PUBLIC_CLIENT = {
  label: 'public client (none) + refresh_token',
  metadata: { token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'] },
};
const CONFIDENTIAL_NO_REFRESH = {
  label: 'confidential client (client_secret_post), no refresh_token',
  metadata: { token_endpoint_auth_method: 'client_secret_post', grant_types: ['authorization_code'] },
};
// No registration: the SDK presents the document URL as client_id (SEP-991), because the
// provider advertises client_id_metadata_document_supported.
const METADATA_DOCUMENT_CLIENT = {
  label: 'client metadata document (clientMetadataUrl, no registration) + refresh_token',
  metadata: { token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'] },
  metadataDocument: true,
};
const RUNS = [
  { user: 'bob', password: 'secret456', scopes: ['read'], client: PUBLIC_CLIENT },
  { user: 'alice', password: 'password123', scopes: ['read', 'write'], client: PUBLIC_CLIENT },
  { user: 'admin', password: 'admin789', scopes: ['read', 'write', 'admin'], client: PUBLIC_CLIENT },
  // Without a refresh token the SDK answers a 403 step-up challenge by authorizing again.
  { user: 'bob', password: 'secret456', scopes: ['read'], client: CONFIDENTIAL_NO_REFRESH, tag: 'bob*' },
  { user: 'alice', password: 'password123', scopes: ['read', 'write'], client: CONFIDENTIAL_NO_REFRESH, tag: 'alice*' },
  { user: 'alice', password: 'password123', scopes: ['read', 'write'], client: METADATA_DOCUMENT_CLIENT, tag: 'alice (CIMD)' },
];

class CheckError extends Error {}

function check(condition, message) {
  if (!condition) throw new CheckError(message);
}

// ---------------------------------------------------------------------------------------------
// HTTP trace: the SDK gets this `fetch`, so every request it makes (MCP, discovery, registration,
// token) is recorded with what matters for the report.

function headerOf(headers, name) {
  if (!headers) return null;
  if (headers instanceof Headers) return headers.get(name);
  if (Array.isArray(headers)) return headers.find(([k]) => k.toLowerCase() === name)?.[1] ?? null;
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
  return key ? headers[key] : null;
}

function describeBody(path, body, headers) {
  if (body == null) return {};
  const text = body instanceof URLSearchParams ? body.toString() : typeof body === 'string' ? body : null;
  if (text == null) return {};
  if (path === '/token') {
    const p = new URLSearchParams(text);
    const auth = headerOf(headers, 'authorization')?.startsWith('Basic ')
      ? 'client_secret_basic'
      : p.has('client_secret')
        ? 'client_secret_post'
        : 'none';
    return {
      grant_type: p.get('grant_type'),
      resource: p.get('resource'),
      scope: p.get('scope'),
      client_auth: auth,
    };
  }
  try {
    const json = JSON.parse(text);
    if (path === '/register') return { register: json };
    const messages = Array.isArray(json) ? json : [json];
    return { rpc: messages.map((m) => (m.params?.name ? `${m.method} ${m.params.name}` : m.method ?? 'response')).join(', ') };
  } catch {
    return {};
  }
}

function tracingFetch(trace) {
  return async (input, init = {}) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const entry = {
      who: 'sdk',
      method,
      url,
      bearer: /^Bearer /i.test(headerOf(init.headers, 'authorization') ?? ''),
      ...describeBody(url.pathname, init.body, init.headers),
    };
    trace.push(entry);
    const response = await fetch(input, init);
    entry.status = response.status;
    entry.wwwAuthenticate = response.headers.get('www-authenticate');
    return response;
  };
}

// ---------------------------------------------------------------------------------------------
// The client metadata document, served over https on loopback; every fetch is counted (only the
// provider fetches it: the SDK just presents its URL).

async function startDocumentServer() {
  const fetches = [];
  let document = null;
  const server = createServer(
    { cert: readFileSync(CIMD_CERT_FILE), key: readFileSync(CIMD_KEY_FILE) },
    (request, response) => {
      fetches.push(`${request.method} ${request.url}`);
      if (request.method !== 'GET' || request.url !== DOCUMENT_PATH) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' });
      response.end(JSON.stringify(document));
    },
  );
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const url = `https://127.0.0.1:${server.address().port}${DOCUMENT_PATH}`;
  document = {
    client_id: url,
    client_name: 'official MCP SDK check (client metadata document)',
    redirect_uris: [REDIRECT_URL],
    grant_types: METADATA_DOCUMENT_CLIENT.metadata.grant_types,
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  };
  server.unref();
  return { url, fetches, close: () => server.close() };
}

// ---------------------------------------------------------------------------------------------
// The browser's part of the authorization code flow, over HTTP.

function decodeHtml(s) {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function hiddenField(html, name) {
  const m = html.match(new RegExp(`<input type="hidden" name="${name}" value="([^"]*)">`));
  return m ? decodeHtml(m[1]) : null;
}

function formAction(html, base) {
  const m = html.match(/<form method="post" action="([^"]*)">/);
  check(m, 'no POST form on the page');
  return new URL(decodeHtml(m[1]), base);
}

function scopesOnPage(html) {
  return [...html.matchAll(/<li><code>([^<]*)<\/code>/g)].map((m) => decodeHtml(m[1]));
}

class HeadlessBrowserProvider {
  constructor({ user, password, clientMetadata, clientMetadataUrl, trace }) {
    this.user = user;
    this.password = password;
    this.trace = trace;
    // Read by the SDK: with it (and the provider's support), no dynamic registration.
    this.clientMetadataUrl = clientMetadataUrl;
    this._clientMetadata = {
      client_name: `official MCP SDK check (${user})`,
      redirect_uris: [REDIRECT_URL],
      response_types: ['code'],
      ...clientMetadata,
    };
    this.authorizations = []; // one per redirectToAuthorization call
    this.pendingCode = null;
  }

  get redirectUrl() {
    return REDIRECT_URL;
  }

  get clientMetadata() {
    return this._clientMetadata;
  }

  state() {
    this._state = randomBytes(16).toString('base64url');
    return this._state;
  }

  clientInformation() {
    return this._clientInformation;
  }

  saveClientInformation(info) {
    this._clientInformation = info;
  }

  tokens() {
    return this._tokens;
  }

  saveTokens(tokens) {
    this._tokens = tokens;
  }

  saveCodeVerifier(verifier) {
    this._codeVerifier = verifier;
  }

  codeVerifier() {
    if (!this._codeVerifier) throw new Error('no code verifier saved');
    return this._codeVerifier;
  }

  takeCode() {
    const code = this.pendingCode;
    this.pendingCode = null;
    return code;
  }

  // The "browser": GET the authorization URL, log in, approve, read the callback's query.
  async redirectToAuthorization(authorizationUrl) {
    const q = authorizationUrl.searchParams;
    const record = {
      scope: q.get('scope'),
      resource: q.get('resource'),
      code_challenge_method: q.get('code_challenge_method'),
      has_code_challenge: q.has('code_challenge'),
      state_sent: q.has('state'),
    };
    this.authorizations.push(record);
    const step = (what, status) => this.trace.push({ who: 'browser', what, status });
    const get = await fetch(authorizationUrl, { redirect: 'manual', signal: AbortSignal.timeout(10_000) });
    step(`GET ${authorizationUrl.pathname} (scope=${record.scope ?? '-'})`, get.status);
    let final;
    if (get.status >= 300 && get.status < 400) {
      final = get; // an error redirect before any form (e.g. invalid_scope)
    } else {
      if (get.status !== 200) throw new CheckError(`GET /authorize answered ${get.status}: ${await get.text()}`);
      const cookie = get.headers
        .getSetCookie()
        .map((c) => c.split(';')[0])
        .find((c) => c.startsWith('oauth_browser='));
      check(cookie, 'the provider set no oauth_browser cookie');
      const login = await get.text();
      check(login.includes('name="password"'), 'GET /authorize did not show the login form');
      const post = (url, fields) =>
        fetch(url, {
          method: 'POST',
          redirect: 'manual',
          headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
          body: new URLSearchParams(fields),
          signal: AbortSignal.timeout(10_000),
        });
      const afterLogin = await post(formAction(login, authorizationUrl), {
        request_id: hiddenField(login, 'request_id'),
        csrf_token: hiddenField(login, 'csrf_token'),
        username: this.user,
        password: this.password,
      });
      step(`POST /authorize login ${this.user}`, afterLogin.status);
      if (afterLogin.status >= 300 && afterLogin.status < 400) {
        final = afterLogin; // access_denied: the user holds none of the requested scopes
      } else {
        const consent = await afterLogin.text();
        check(afterLogin.status === 200 && consent.includes('name="decision"'), `login as ${this.user} failed`);
        record.consented_scope = scopesOnPage(consent).join(' ');
        final = await post(formAction(consent, authorizationUrl), {
          request_id: hiddenField(consent, 'request_id'),
          csrf_token: hiddenField(consent, 'csrf_token'),
          decision: 'approve',
        });
        step(`POST /authorize consent approve (${record.consented_scope})`, final.status);
      }
    }
    check(final.status >= 300 && final.status < 400, `expected a redirect, got ${final.status}`);
    const location = new URL(final.headers.get('location'));
    check(location.origin + location.pathname === REDIRECT_URL, `redirected to ${location} instead of the callback`);
    check(location.searchParams.get('state') === this._state, 'state in the callback does not match');
    check(location.searchParams.get('iss') === ISSUER, `iss in the callback is ${location.searchParams.get('iss')}, not ${ISSUER}`);
    const code = location.searchParams.get('code');
    if (code) {
      record.outcome = 'code';
      this.pendingCode = code;
    } else {
      record.outcome = location.searchParams.get('error');
      record.error_description = location.searchParams.get('error_description');
    }
    step(`callback: ${code ? 'code' : record.outcome}, state and iss checked`, null);
  }
}

// ---------------------------------------------------------------------------------------------
// One run: one user, one fresh SDK client with its own OAuth state.

function expectation(requirement, scopes) {
  return requirement === 'public' || requirement === null || scopes.includes(requirement);
}

async function runUser(run, documentServer) {
  const trace = [];
  const provider = new HeadlessBrowserProvider({
    user: run.user,
    password: run.password,
    clientMetadata: run.client.metadata,
    clientMetadataUrl: run.client.metadataDocument ? documentServer.url : undefined,
    trace,
  });
  const documentFetchesBefore = documentServer.fetches.length;
  let transport;
  let client;

  // Runs `op`; if the SDK ended it with UnauthorizedError after our "browser" obtained a code,
  // finishes the flow with transport.finishAuth(code) and runs `op` once more.
  const withAuth = async (op) => {
    try {
      return await op();
    } catch (error) {
      if (!(error instanceof UnauthorizedError) || !provider.pendingCode) throw error;
      await transport.finishAuth(provider.takeCode());
      return await inANewSessionAfter404(op);
    }
  };
  // A session opened without a token is never carried over to a signed-in caller: the server
  // answers 404 (session not found), and the client starts a new session, as the MCP
  // specification says a client must after a 404. The SDK does not do it by itself.
  const inANewSessionAfter404 = async (op) => {
    try {
      return await op();
    } catch (error) {
      if (error?.code !== 404) throw error;
      notes.push('signed in on the anonymous session: 404, so the client started a new session with its token');
      await connect();
      return await op();
    }
  };
  const connect = async () => {
    await client?.close().catch(() => {});
    transport = new StreamableHTTPClientTransport(new URL(MCP_URL), {
      authProvider: provider,
      fetch: tracingFetch(trace),
    });
    client = new Client({ name: 'tower-introspect-official-sdk-check', version: '1.0.0' });
    await client.connect(transport, { timeout: REQUEST_TIMEOUT_MS });
  };

  const outcomes = {};
  const notes = [];
  const result = { run, trace, provider, outcomes, notes };
  try {
    await withAuth(connect);
    const listed = await withAuth(() => client.listTools(undefined, { timeout: REQUEST_TIMEOUT_MS }));
    const names = listed.tools.map((t) => t.name).sort();
    check(
      JSON.stringify(names) === JSON.stringify([...TOOLS.map(([n]) => n), ...HANDLE_TOOLS].sort()),
      `tools/list returned ${names.join(', ')}`,
    );

    for (const [tool, requirement] of TOOLS) {
      const from = trace.length;
      const authorizationsBefore = provider.authorizations.length;
      const args = tool === 'write_data' ? { value: `hello from ${run.user} via the official SDK` } : {};
      let result;
      let error;
      try {
        result = await withAuth(() =>
          client.callTool({ name: tool, arguments: args }, undefined, { timeout: REQUEST_TIMEOUT_MS }),
        );
      } catch (e) {
        error = e;
      }
      const slice = trace.slice(from);
      const expected = expectation(requirement, run.scopes);
      const text = result?.content?.map((c) => c.text ?? '').join('') ?? '';
      const calls = slice.filter((e) => e.rpc === `tools/call ${tool}`);
      const denial = calls.find((e) => e.status === 403);

      if (result && !result.isError) {
        check(expected, `${run.user}: ${tool} succeeded but the user lacks scope ${requirement}`);
        check(!denial || calls.at(-1).status === 200, `${run.user}: ${tool} succeeded after a 403`);
        const sawOAuth = calls.some((e) => e.status === 401);
        outcomes[tool] = sawOAuth ? 'ok (401→OAuth)' : requirement === 'public' && !calls[0]?.bearer ? 'ok (anon)' : 'ok';
        if (tool === 'get_user_profile') {
          const profile = JSON.parse(text);
          check(profile.username === run.user, `get_user_profile names ${profile.username}, not ${run.user}`);
          check(profile.client_id === provider.clientInformation()?.client_id, 'get_user_profile: unexpected client_id');
          check(
            [].concat(profile.audiences ?? []).includes(MCP_URL),
            `token audience ${JSON.stringify(profile.audiences)} does not include ${MCP_URL}`,
          );
          const granted = String(profile.scopes).split(' ').sort().join(' ');
          check(granted === [...run.scopes].sort().join(' '), `granted scopes "${profile.scopes}", expected "${run.scopes.join(' ')}"`);
        }
        if (tool === 'write_data') check(/^stored note #\d+$/.test(text), `write_data answered ${text}`);
        if (tool === 'admin_operation') check(text.includes(run.user), `admin_operation answered ${text}`);
        if (tool === 'list_available_resources') {
          const allowed = TOOLS.filter(([, req]) => expectation(req, run.scopes)).map(([n]) => n);
          check(
            JSON.stringify(JSON.parse(text).tools) === JSON.stringify(allowed),
            `list_available_resources: ${text}`,
          );
        }
      } else if (result?.isError) {
        throw new CheckError(`${run.user}: ${tool} returned a tool error: ${text}`);
      } else {
        // Denied: must be the server's 403 insufficient_scope step-up challenge, and expected.
        check(!expected, `${run.user}: ${tool} failed unexpectedly: ${error?.stack ?? error}`);
        check(
          denial && /error="insufficient_scope"/.test(denial.wwwAuthenticate ?? ''),
          `${run.user}: ${tool} failed without a 403 insufficient_scope challenge: ${error}`,
        );
        const challengeScope = denial.wwwAuthenticate.match(/scope="([^"]*)"/)?.[1];
        const refreshed = slice.some((e) => e.grant_type === 'refresh_token');
        const reauth = provider.authorizations.slice(authorizationsBefore);
        let reaction;
        if (refreshed) {
          reaction = 'refresh';
          notes.push(
            `${tool}: 403 scope="${challengeScope}" → SDK refreshed the token (refresh_token grant, no scope parameter), ` +
              `retried, got the same 403 and gave up: ${error.constructor.name}(${error.code ?? ''}) "${error.message}"`,
          );
        } else if (reauth.length) {
          reaction = `re-auth: ${reauth.map((a) => a.outcome).join(',')}`;
          notes.push(
            `${tool}: 403 scope="${challengeScope}" → SDK started a new authorization with scope="${reauth[0].scope}" ` +
              `(resource=${reauth[0].resource ?? 'none'}); the provider answered ${reauth.map((a) => a.outcome).join(', ')}; ` +
              `the call failed with ${error.constructor.name} "${error.message}"`,
          );
        } else {
          reaction = 'no retry';
          notes.push(`${tool}: 403 scope="${challengeScope}" → ${error.constructor.name} "${error.message}"`);
        }
        outcomes[tool] = `denied 403 (${reaction})`;
      }
    }
    const registrations = trace.filter((e) => e.who === 'sdk' && e.url.pathname === '/register');
    if (run.client.metadataDocument) {
      // The SDK presented the document URL instead of registering, and the provider fetched it.
      check(registrations.length === 0, `the SDK registered dynamically (${registrations.length} POST /register)`);
      check(
        provider.clientInformation()?.client_id === documentServer.url,
        `client_id ${provider.clientInformation()?.client_id} is not the document URL ${documentServer.url}`,
      );
      const fetched = documentServer.fetches.length - documentFetchesBefore;
      check(fetched >= 1, 'the provider never fetched the client metadata document');
      notes.push(
        `client_id = ${documentServer.url} (no POST /register; the provider fetched the document ${fetched} time(s))`,
      );
    } else {
      check(registrations.length === 1 && registrations[0].status === 201, 'the SDK did not register exactly once');
    }
  } catch (error) {
    error.partial = result;
    throw error;
  } finally {
    await client?.close().catch(() => {});
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Report.

function formatTrace(trace) {
  return trace.map((e) => {
    if (e.who === 'browser') return `  browser ${e.what}${e.status ? ` → ${e.status}` : ''}`;
    const base = `${e.url.origin === new URL(MCP_URL).origin ? 'MCP' : 'AS '}`;
    let what = `${e.method} ${e.url.pathname}`;
    if (e.url.href === MCP_URL) what += `${e.rpc ? ` ${e.rpc}` : ''}${e.bearer ? ' [Bearer]' : ' [no token]'}`;
    if (e.register) {
      const r = e.register;
      what += ` scope="${r.scope}" auth=${r.token_endpoint_auth_method} grants=${(r.grant_types ?? []).join('+')}`;
    }
    if (e.grant_type) {
      what += ` grant_type=${e.grant_type} resource=${e.resource ?? '-'} scope=${e.scope ?? '-'} auth=${e.client_auth}`;
    }
    let line = `  sdk ${base} ${what} → ${e.status}`;
    if (e.status === 401 || e.status === 403) line += `\n        WWW-Authenticate: ${e.wwwAuthenticate}`;
    return line;
  });
}

function table(results) {
  const header = ['user (client)', ...TOOLS.map(([n]) => n)];
  const rows = results.map((r) => [
    `${r.run.tag ?? r.run.user} (${r.run.scopes.join(' ')})`,
    ...TOOLS.map(([n]) => r.outcomes[n] ?? 'not run'),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

const started = Date.now();
console.log(`official MCP TypeScript SDK: @modelcontextprotocol/sdk ${SDK_VERSION} on Node ${process.version}`);
console.log(`MCP server ${MCP_URL}; authorization server ${ISSUER}`);
const documentServer = await startDocumentServer();
console.log(`client metadata document ${documentServer.url}`);
const results = [];
let failure = null;
for (const run of RUNS) {
  try {
    results.push(await runUser(run, documentServer));
  } catch (error) {
    failure = { run, error };
    if (error.partial) results.push(error.partial);
    break;
  }
}

for (const [i, r] of results.entries()) {
  if (i === 0 || VERBOSE || r.run === failure?.run) {
    console.log(`\nHTTP trace, ${r.run.tag ?? r.run.user} (${r.run.client.label}):`);
    console.log(formatTrace(r.trace).join('\n'));
  }
}

if (results.length) {
  // What the SDK did with the challenge, the metadata, scope and resource (from the first run).
  const first = results[0];
  const t = first.trace;
  const challenge = t.find((e) => e.status === 401);
  const auth0 = first.provider.authorizations[0];
  const codeExchange = t.find((e) => e.grant_type === 'authorization_code');
  const registration = t.find((e) => e.register);
  const prm = t.find((e) => e.url.pathname.startsWith('/.well-known/oauth-protected-resource'));
  const asm = t.find((e) => e.url.pathname.startsWith('/.well-known/oauth-authorization-server') || e.url.pathname.startsWith('/.well-known/openid-configuration'));
  try {
    check(challenge && /resource_metadata="/.test(challenge.wwwAuthenticate ?? ''), 'no 401 challenge with resource_metadata');
    check(prm?.status === 200, 'the SDK did not fetch the RFC 9728 metadata');
    check(asm?.status === 200 && asm.url.origin === new URL(ISSUER).origin, 'the SDK did not fetch the RFC 8414 metadata');
    check(registration?.status === 201, 'the SDK did not register dynamically');
    check(auth0?.code_challenge_method === 'S256' && auth0.has_code_challenge, 'no PKCE S256 in the authorization request');
    check(codeExchange?.status === 200, 'the code exchange failed');
  } catch (error) {
    failure ??= { run: first.run, error };
  }
  console.log('\nSDK behaviour (first run):');
  console.log(`  401 came on: ${challenge?.rpc} (the handshake and public_info are public)`);
  console.log(`  401 WWW-Authenticate: ${challenge?.wwwAuthenticate}`);
  console.log(`  RFC 9728 metadata: GET ${prm?.url.pathname} → ${prm?.status}; RFC 8414: GET ${asm?.url.pathname} → ${asm?.status}`);
  console.log(`  registration (RFC 7591) scope: "${registration?.register.scope}"`);
  console.log(`  /authorize scope: "${auth0?.scope}" (consented: "${auth0?.consented_scope}"); resource: ${auth0?.resource ?? 'NOT SENT'}; PKCE: ${auth0?.code_challenge_method}`);
  console.log(`  /token (authorization_code) resource: ${codeExchange?.resource ?? 'NOT SENT'}`);
  for (const r of results) {
    for (const note of r.notes) console.log(`  ${r.run.tag ?? r.run.user}: ${note}`);
  }
  console.log('\nRuns: ' + results.map((r) => `${r.run.tag ?? r.run.user} = ${r.run.client.label}`).join('; '));
  console.log('\n' + table(results));
}

const checks = results.length - (failure && results.some((r) => r.run === failure.run) ? 1 : 0);
const seconds = ((Date.now() - started) / 1000).toFixed(1);
if (failure) {
  console.log(`\nFAIL (${failure.run.tag ?? failure.run.user}): ${failure.error?.stack ?? failure.error}`);
  console.log(`${checks} passed, 1 failed (${seconds} s)`);
  process.exit(1);
}
documentServer.close();
console.log(`\nPASS: every run completed the OAuth flow with the official SDK (dynamic registration and client metadata document) and got the expected outcome for every tool`);
console.log(`${checks} passed, 0 failed (${seconds} s)`);
process.exit(0);
