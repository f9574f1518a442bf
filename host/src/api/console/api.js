// Talking to easel: the keys the user signed in with (kept in this tab's session storage
// only) and one request function that turns every refusal into the sentence the API wrote.

const STORAGE = 'easel-console';

/** `{client: {key, id}, admin: {key}}`, either part absent. */
export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE)) || {};
  } catch {
    return {};
  }
}

export function saveSession(value) {
  sessionStorage.setItem(STORAGE, JSON.stringify(value));
}

export function signOut() {
  sessionStorage.removeItem(STORAGE);
}

/** A refused or failed request, with the API's own message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The sentence an error body carries, in whichever API's shape it came. */
export function messageOf(body, status) {
  if (body && typeof body === 'object') {
    if (typeof body.error === 'string') return body.error;
    if (body.error && typeof body.error.message === 'string') return body.error.message;
    if (typeof body.message === 'string') return body.message;
    if (typeof body.detail === 'string') return body.detail;
  }
  if (typeof body === 'string' && body.trim()) return body.trim();
  return `The host answered ${status}.`;
}

/** `method path` with `key`; a JSON body, a FormData upload, or none. Resolves to the JSON. */
export async function call(key, method, path, body) {
  const headers = { Authorization: `Bearer ${key}` };
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload });
  } catch (error) {
    throw new ApiError(0, `The host could not be reached (${error.message}).`);
  }
  const text = await response.text();
  let parsed = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: the text itself is the message.
  }
  if (!response.ok) throw new ApiError(response.status, messageOf(parsed, response.status));
  return parsed;
}

/** As the signed-in client. */
export function asClient(method, path, body) {
  const client = session().client;
  if (!client) throw new ApiError(401, 'Sign in with a client key for this.');
  return outUnlessTaken('client', call(client.key, method, path, body));
}

/** As the operator. */
export function asAdmin(method, path, body) {
  const admin = session().admin;
  if (!admin) throw new ApiError(401, 'Sign in with the admin key for this.');
  return outUnlessTaken('admin', call(admin.key, method, path, body));
}

/** Why the tab was last signed out by the host, shown once by the sign-in page. */
let refusedWith = null;

export function takeRefusal() {
  const why = refusedWith;
  refusedWith = null;
  return why;
}

/**
 * The answer, unless the host refused the key itself (401: revoked, expired, rotated away):
 * then that key's part of the session ends, `easel-signed-out` tells the shell, and the
 * refusal is passed on.
 */
async function outUnlessTaken(part, answer) {
  try {
    return await answer;
  } catch (error) {
    if (error.status === 401 && session()[part]) {
      const current = session();
      delete current[part];
      saveSession(current);
      refusedWith = error;
      window.dispatchEvent(new Event('easel-signed-out'));
    }
    throw error;
  }
}

/**
 * Finds out what `key` is: a client key (its account answers), the admin key (the plugin
 * list answers), both (a host without client keys takes any key as its one client), or
 * neither, refused with the client API's message.
 */
export async function signIn(key) {
  const [client, admin] = await Promise.allSettled([
    call(key, 'GET', '/api/v1/account'),
    call(key, 'GET', '/admin/plugins'),
  ]);
  if (client.status === 'rejected' && admin.status === 'rejected') throw client.reason;
  const current = session();
  if (client.status === 'fulfilled') current.client = { key, id: client.value.client_id };
  if (admin.status === 'fulfilled') current.admin = { key };
  saveSession(current);
  return current;
}

/** The model list, from the operator's route when signed in as operator. */
export function catalog() {
  return session().admin ? asAdmin('GET', '/admin/models') : asClient('GET', '/api/v1/catalog');
}

/** Listing, reading and cancelling tasks: across clients for the operator, else one's own. */
export const tasks = {
  list(query) {
    const params = new URLSearchParams(query).toString();
    return session().admin
      ? asAdmin('GET', `/admin/tasks?${params}`)
      : asClient('GET', `/api/v1/jobs?${params}`);
  },
  get(id) {
    const safe = encodeURIComponent(id);
    return session().admin
      ? asAdmin('GET', `/admin/tasks/${safe}`)
      : asClient('GET', `/api/v1/jobs/${safe}/detail`);
  },
  cancel(id) {
    const safe = encodeURIComponent(id);
    return session().admin
      ? asAdmin('POST', `/admin/tasks/${safe}/cancel`)
      : asClient('POST', `/api/v1/jobs/${safe}/cancel`);
  },
};

export const TERMINAL = ['succeeded', 'failed', 'expired', 'cancelled'];
