// The management API as the console calls it: the session token from signing in goes with
// every call, and problem documents (RFC 9457) become `Problem` errors with their stable code.

const TOKEN_KEY = 'tongban.session';

export class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || `http_${status}`;
    this.title = body.title || '';
    this.reasons = body.reasons || [];
  }
}

let token = sessionStorage.getItem(TOKEN_KEY);
let onSignedOut = () => {};

export function signedIn() {
  return token !== null;
}

// Called when the gateway no longer accepts the session, so the shell can show the sign-in.
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

export async function api(path, { method = 'GET', body, query } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let url = `/api/v1${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(name, value);
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401 && token) {
      forget();
      onSignedOut();
    }
    throw new Problem(response.status, data);
  }
  return data;
}

// Sends `text` as the body of a POST in `contentType` (a CSV list), answering as `api` does.
export async function upload(path, text, contentType) {
  const response = await fetch(`/api/v1${path}`, {
    method: 'POST',
    headers: { Accept: 'application/json', Authorization: `Bearer ${token}`, 'Content-Type': contentType },
    body: text,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Problem(response.status, data);
  return data;
}

// Fetches a file the API writes (a report's workbook or CSV) with the session's token and
// hands it to the browser as a download named `name`.
export async function download(path, query, name) {
  const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null));
  const response = await fetch(`/api/v1${path}?${params}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Problem(response.status, await response.json().catch(() => ({})));
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export async function signIn(username, password) {
  const session = await api('/sessions', { method: 'POST', body: { username, password } });
  token = session.token;
  sessionStorage.setItem(TOKEN_KEY, token);
  return session;
}

export async function signOut() {
  try {
    await api('/sessions/current', { method: 'DELETE' });
  } finally {
    forget();
  }
}

function forget() {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
}

// Every page of a list, for the short lists the console shows whole.
export async function all(path, query = {}) {
  const items = [];
  let after;
  for (;;) {
    const page = await api(path, { query: { ...query, limit: 500, after } });
    items.push(...page.items);
    if (!page.next) return items;
    after = page.next;
  }
}
