// The gateway API with the page's token: fetch with a bearer header, errors as ApiError.

export const token = new URLSearchParams(location.search).get("token") || "";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  toString() {
    return `${this.message} (${this.code})`;
  }
}

/** Call the API; resolves to the JSON body, rejects with an ApiError carrying `{code, message}`. */
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (exc) {
    throw new ApiError(0, "network", `gateway unreachable: ${exc.message}`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || response.statusText || "request failed",
    );
  }
  return data;
}

/** A same-origin URL with the token in the query (EventSource cannot send headers). */
export function streamUrl(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  url.searchParams.set("token", token);
  return url;
}

export const startRun = (prompt, session) =>
  api("POST", "/v1/runs", session ? { prompt, session } : { prompt });
export const sendMessage = (session, text) =>
  api("POST", `/v1/sessions/${encodeURIComponent(session)}/messages`, { text });
export const cancelRun = (session) =>
  api("POST", `/v1/sessions/${encodeURIComponent(session)}/cancel`);
