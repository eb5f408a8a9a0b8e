// The retry lab's page. Every request is a plain fetch to the public API, the way
// any client sends it; the faults are played here: a "lost" response is one the
// server sent and this page threw away, and a "new key" retry is the client bug.

const $ = (id) => document.getElementById(id);
const DEPOSIT = 10_000;

/** What the page knows: the account, and the last charge it sent (to retry it) with its exchanges so far. */
const state = { account: null, lastCharge: null };

/** One request to the API; `lose` throws the response away, as a cut connection would. */
async function send(method, path, { key, body, ifMatch, lose = false } = {}) {
  const headers = { Authorization: `Bearer ${$('api-key').value.trim()}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (key) headers['Idempotency-Key'] = key;
  if (ifMatch) headers['If-Match'] = ifMatch;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const exchange = {
    method,
    path,
    key,
    ifMatch,
    body,
    lost: lose,
    status: response.status,
    replayed: response.headers.get('Idempotent-Replayed') === 'true',
    retryAfter: response.headers.get('Retry-After'),
    etag: response.headers.get('ETag'),
    answer: text ? JSON.parse(text) : null,
  };
  logExchange(exchange);
  return exchange;
}

const newKey = () => `lab-${crypto.randomUUID()}`;
const money = (cents) =>
  `${cents < 0 ? '−' : ''}$${(Math.abs(cents) / 100).toLocaleString('en-US', { minimumFractionDigits: 2 })}`;

// ---- The actions -----------------------------------------------------------

async function createAccount() {
  const account = await send('POST', '/accounts', {
    key: newKey(),
    body: { name: 'Retry lab', currency: 'USD' },
  });
  if (account.status !== 201) return tell([account], problemText(account));
  const deposit = await send('POST', `/accounts/${account.answer.id}/deposits`, {
    key: newKey(),
    body: { amount: DEPOSIT, currency: 'USD', description: 'Retry lab' },
  });
  state.account = account.answer;
  state.lastCharge = null;
  for (const id of ['charge', 'duplicates', 'stale']) $(id).disabled = false;
  await refresh();
  tell(
    [account, deposit],
    `Account ${account.answer.id} opened and ${money(DEPOSIT)} deposited. Now charge it, with the response lost.`,
  );
}

async function charge() {
  const body = { accountId: state.account.id, amount: Number($('amount').value), currency: 'USD' };
  const lose = $('lose').checked;
  const key = newKey();
  const exchange = await send('POST', '/charges', { key, body, lose });
  state.lastCharge = { key, body, history: [exchange] };
  $('retry-same').disabled = $('retry-new').disabled = false;
  await refresh();
  tell(
    [exchange],
    lose
      ? `The server charged the account and committed, then the response was lost on the way back. The client cannot tell whether the charge happened: all it can do is retry. Retry with the same key, or see what a new key does.`
      : exchange.status === 201
        ? `A first request: the server charged ${money(body.amount)} and stored the response with key ${key}. Sent again with that key, it would be replayed.`
        : problemText(exchange),
  );
}

async function retrySameKey() {
  const { key, body, history } = state.lastCharge;
  const exchange = await send('POST', '/charges', { key, body });
  history.push(exchange);
  await refresh();
  tell(
    history.slice(-4),
    exchange.replayed
      ? `Same key, same body: the server found the response it stored and sent it again (Idempotent-Replayed: true), same status, same charge ${exchange.answer?.id ?? exchange.answer?.chargeId}. Nothing was charged again.`
      : problemText(exchange),
  );
}

async function retryNewKey() {
  const { body, history } = state.lastCharge;
  const key = newKey();
  const exchange = await send('POST', '/charges', { key, body });
  state.lastCharge = { key, body, history: [...history, exchange] };
  await refresh();
  tell(
    state.lastCharge.history.slice(-4),
    exchange.status === 201
      ? `A new key is a new request, as far as the server can tell: it charged ${money(body.amount)} again, as charge ${exchange.answer.id}. This is how double charges happen: one key per operation, reused on every retry.`
      : problemText(exchange),
  );
}

async function duplicates() {
  const key = newKey();
  const body = { accountId: state.account.id, amount: Number($('amount').value), currency: 'USD' };
  state.lastCharge = { key, body };
  const all = await Promise.all(
    Array.from({ length: 5 }, () => send('POST', '/charges', { key, body })),
  );
  await refresh();
  const executed = all.filter((e) => e.status < 300 && !e.replayed).length;
  const inUse = all.filter((e) => e.status === 409).length;
  const replays = all.filter((e) => e.replayed).length;
  tell(
    all,
    `Five requests with one key at once: ${executed} executed. ${inUse} got 409 idempotency-key-in-use (the first was still running: retry after Retry-After, or send Prefer: wait=N), ${replays} arrived after it finished and got its replay. One charge.`,
  );
}

async function staleIfMatch() {
  const path = `/accounts/${state.account.id}`;
  const read = await send('GET', path);
  const first = await send('PUT', path, {
    body: { name: `Retry lab, renamed at ${new Date().toLocaleTimeString()}` },
    ifMatch: read.etag,
  });
  const second = await send('PUT', path, { body: { name: 'A lost update' }, ifMatch: read.etag });
  await refresh();
  tell(
    [read, first, second],
    second.status === 412
      ? `Both PUTs were sent with If-Match ${read.etag}, the version read first. The first matched and applied (now ${first.etag}); the second was stale: 412, and nothing was overwritten. PUT needs no key: setting a name twice is setting it once; If-Match makes it a compare-and-set.`
      : problemText(second),
  );
}

function problemText(exchange) {
  const problem = exchange.answer ?? {};
  return `${exchange.status} ${String(problem.type ?? '').replace('/problems/', '')}: ${problem.detail ?? ''}`;
}

// ---- What the page shows ---------------------------------------------------

async function refresh() {
  const auth = { Authorization: `Bearer ${$('api-key').value.trim()}` };
  const [account, ledger] = await Promise.all(
    [`/accounts/${state.account.id}`, `/accounts/${state.account.id}/ledger?limit=100`].map((p) =>
      fetch(p, { headers: auth }).then((r) => r.json()),
    ),
  );
  $('balance').textContent = money(account.balance);
  $('account').textContent = `${account.id} · ${account.name}`;
  $('ledger').tBodies[0].replaceChildren(
    ...ledger.data.map((entry) =>
      row([entry.type, money(entry.amount), money(entry.balanceAfter), entry.sourceId]),
    ),
  );
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const cell of cells)
    tr.append(Object.assign(document.createElement('td'), { textContent: cell }));
  return tr;
}

function logExchange(e) {
  const li = document.createElement('li');
  li.dataset.status = String(e.status);
  li.dataset.replayed = String(e.replayed);
  li.dataset.lost = String(e.lost);
  const head = document.createElement('div');
  head.append(
    span(`${e.method} ${e.path}`),
    e.key ? span(` · Idempotency-Key: ${e.key}`, 'muted') : '',
    e.ifMatch ? span(` · If-Match: ${e.ifMatch}`, 'muted') : '',
    document.createElement('br'),
    e.lost ? span('✗ response lost (the server answered ', 'lost') : span('→ ', 'muted'),
    span(`${e.status}`, `status s${String(e.status)[0]}`),
    e.lost ? span(' and committed; the client never saw it)', 'lost') : '',
    e.replayed ? span(' Idempotent-Replayed: true', 'replayed') : '',
    e.retryAfter ? span(` Retry-After: ${e.retryAfter}`, 'muted') : '',
    e.etag ? span(` ETag: ${e.etag}`, 'muted') : '',
  );
  const pre = document.createElement('pre');
  pre.textContent = [
    e.body && `> ${JSON.stringify(e.body)}`,
    e.answer && `< ${JSON.stringify(e.answer)}`,
  ]
    .filter(Boolean)
    .join('\n');
  li.append(head, pre);
  $('requests').prepend(li);
}

function span(text, className = '') {
  return Object.assign(document.createElement('span'), { textContent: text, className });
}

/** The explanation, and a sequence diagram of the exchanges of the last action. */
function tell(exchanges, text) {
  $('explanation').textContent = text;
  const svg = $('sequence');
  const [left, right, top, step] = [90, 470, 48, 58];
  const height = top + exchanges.length * step + 10;
  svg.setAttribute('viewBox', `0 0 560 ${height}`);
  const parts = [
    `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="currentColor"/></marker></defs>`,
    label(left, 20, 'Browser (client)', 'middle', 'bold'),
    label(right, 20, 'API + PostgreSQL', 'middle', 'bold'),
    `<line x1="${left}" y1="28" x2="${left}" y2="${height}" stroke="#c5cad3" stroke-dasharray="4"/>`,
    `<line x1="${right}" y1="28" x2="${right}" y2="${height}" stroke="#c5cad3" stroke-dasharray="4"/>`,
  ];
  exchanges.forEach((e, i) => {
    const y = top + i * step;
    const request = `${e.method} ${e.path.replace(/\/accounts\/acct_\w+/, '/accounts/…')}${e.key ? ` · key …${e.key.slice(-6)}` : ''}`;
    parts.push(arrow(left, right, y, '#1d2330'), label((left + right) / 2, y - 5, request));
    const answer = `${e.status}${e.replayed ? ' · replayed' : ''}${e.status === 201 && !e.replayed ? ' · executed' : ''}`;
    if (e.lost) {
      const middle = (left + right) / 2;
      parts.push(
        arrow(right, middle, y + 26, '#b3261e', true),
        label(middle - 8, y + 31, '✗ lost', 'end', 'bold', '#b3261e'),
        label((right + middle) / 2, y + 21, answer, 'middle', '', '#b3261e'),
      );
    } else {
      const color = e.replayed ? '#1f5fbf' : e.status < 300 ? '#137a3a' : '#b3261e';
      parts.push(
        arrow(right, left, y + 26, color),
        label((left + right) / 2, y + 21, answer, 'middle', '', color),
      );
    }
  });
  svg.innerHTML = parts.join('');
}

function arrow(x1, x2, y, color, dashed = false) {
  return `<line x1="${x1}" y1="${y}" x2="${x2}" y2="${y}" stroke="${color}" color="${color}" stroke-width="1.5" marker-end="url(#arrow)"${dashed ? ' stroke-dasharray="5 3"' : ''}/>`;
}

function label(x, y, text, anchor = 'middle', weight = '', color = '#1d2330') {
  const escaped = text.replace(/[&<>]/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<text x="${x}" y="${y}" text-anchor="${anchor}" font-size="12" fill="${color}"${weight ? ` font-weight="${weight}"` : ''}>${escaped}</text>`;
}

// ---- Wiring ----------------------------------------------------------------

/** Runs an action with the buttons disabled, so that a double click is not a duplicate. */
function action(fn) {
  return async () => {
    const buttons = [...document.querySelectorAll('.controls button')];
    const enabled = buttons.filter((b) => !b.disabled);
    for (const b of enabled) b.disabled = true;
    document.body.dataset.busy = 'true';
    try {
      await fn();
    } catch (error) {
      $('explanation').textContent = `The request failed: ${error.message}`;
    } finally {
      for (const b of enabled) b.disabled = false;
      if (state.lastCharge) $('retry-same').disabled = $('retry-new').disabled = false;
      document.body.dataset.busy = 'false';
    }
  };
}

$('create-account').addEventListener('click', action(createAccount));
$('charge').addEventListener('click', action(charge));
$('retry-same').addEventListener('click', action(retrySameKey));
$('retry-new').addEventListener('click', action(retryNewKey));
$('duplicates').addEventListener('click', action(duplicates));
$('stale').addEventListener('click', action(staleIfMatch));
$('clear').addEventListener('click', () => $('requests').replaceChildren());
document.body.dataset.busy = 'false';
