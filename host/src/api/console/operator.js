// What the host serves and for whom: models per provider, the plugins folder (with its
// reload button), the fleet's live workers, and the clients' balances, spending and limits
// (edited through the admin limits route). A client sees the models and its own account and
// limits; the rest needs the admin key.

import { h, errorBox, time, table, every } from './view.js';
import { asAdmin, asClient, catalog, session } from './api.js';

export async function models() {
  const { models: listed, creditsEnforced } = await catalog();
  const providers = [...new Set(listed.map((m) => m.provider))];
  const price = (m) => (m.price === null || m.price === undefined ? '–' : `${m.price}`);
  return h('section', { class: 'card' },
    h('h1', {}, 'Models'),
    h('p', { class: 'muted' },
      'Every model listed is served and enabled; a plugin that failed to load lists none (see Plugins). ',
      creditsEnforced ? 'Prices are charged per output.' : 'Credits are not enforced: prices are shown, not charged.'),
    providers.length ? null : h('p', {}, 'No model is served.'),
    providers.map((provider) => h('div', { class: 'provider', 'data-provider': provider },
      h('h2', {}, provider),
      table([
        ['Model', (m) => h('code', {}, m.id)],
        ['Name', (m) => m.name],
        ['Kind', (m) => m.kind],
        ['Capabilities', (m) => m.capabilities.join(', ')],
        ['Default for', (m) => m.defaultFor.join(', ') || '–'],
        ['Price', price],
      ], listed.filter((m) => m.provider === provider)))));
}

function shortHash(hash) {
  return hash ? h('code', { title: hash }, hash.slice(0, 12)) : '–';
}

function pluginTable(answer) {
  return [
    h('p', { class: 'muted' }, 'Folder: ', h('code', {}, answer.pluginsDir ?? 'none (EASEL_PLUGINS_DIR is not set)')),
    table([
      ['File', (p) => h('code', {}, p.file.split('/').pop())],
      ['Provider', (p) => p.provider_id ?? '–'],
      ['Version', (p) => p.version ?? '–'],
      ['Contract', (p) => p.contract ?? '–'],
      ['Hash', (p) => shortHash(p.content_hash)],
      ['Models', (p) => p.models.join(', ') || '–'],
      ['Loaded', (p) => (p.loaded_at ? new Date(p.loaded_at).toLocaleString() : '–')],
      ['Last error', (p) => (p.last_error ? h('span', { class: 'error plugin-error' }, p.last_error) : p.left_out || '–')],
    ], answer.plugins, 'No plugin file in the folder.'),
  ];
}

export async function plugins(page) {
  const listing = h('div', { id: 'plugin-list' });
  const outcome = h('div');
  let shown = '';
  const show = (answer) => {
    const seen = JSON.stringify(answer);
    if (seen !== shown) {
      shown = seen;
      listing.replaceChildren(...pluginTable(answer));
    }
  };
  const reload = h('button', {
    type: 'button',
    id: 'reload',
    onclick: async () => {
      reload.disabled = true;
      outcome.replaceChildren();
      try {
        show(await asAdmin('POST', '/admin/plugins/reload'));
      } catch (error) {
        outcome.replaceChildren(errorBox(error));
      } finally {
        reload.disabled = false;
      }
    },
  }, 'Reload');
  // The folder is watched, so files dropped in show up without the button too.
  every(3000, async () => {
    try {
      show(await asAdmin('GET', '/admin/plugins'));
    } catch (error) {
      listing.replaceChildren(errorBox(error));
      shown = '';
    }
  }, page);
  return h('section', { class: 'card' }, h('h1', {}, 'Plugins'), reload, outcome, listing);
}

function workerTable(answer) {
  return table([
    ['Worker', (w) => h('code', { title: w.id }, w.id.slice(-12))],
    ['Host', (w) => (w.pid == null ? w.host : `${w.host} (pid ${w.pid})`)],
    ['Providers', (w) => w.providers.join(', ') || '–'],
    ['Models', (w) => w.models.join(', ') || '–'],
    ['Submitting', (w) => `${w.submitting} of ${w.capacity}`],
    ['Diffusion model', (w) => (w.modelLoaded ? 'loaded' : '–')],
    ['Version', (w) => w.version],
    ['Started', (w) => time(w.startedAt)],
    ['Last seen', (w) => time(w.lastSeen)],
  ], answer.workers, 'No live worker: queued tasks wait for one.');
}

function breakerTable(answer) {
  return table([
    ['Provider', (b) => h('code', {}, b.provider)],
    ['State', (b) => (b.open ? `open until ${time(b.openUntil)}: its queued tasks wait` : 'closed, counting')],
    ['Failed submits in a row', (b) => b.failures],
    ['Last failure', (b) => `${time(b.lastFailure)}: ${b.lastError}`],
  ], answer.breakers, 'No provider is failing.');
}

export async function workers(page) {
  const listing = h('div', { id: 'worker-list' });
  const breakers = h('div', { id: 'breaker-list' });
  // A worker heartbeats every third of its lease; a dead one drops out after its lease.
  every(3000, async () => {
    try {
      const answer = await asAdmin('GET', '/admin/workers');
      listing.replaceChildren(workerTable(answer));
      breakers.replaceChildren(breakerTable(answer));
    } catch (error) {
      listing.replaceChildren(errorBox(error));
    }
  }, page);
  return h('section', { class: 'card' },
    h('h1', {}, 'Workers'),
    h('p', { class: 'muted' },
      'Each process that runs tasks, while it heartbeats; it claims only the tasks of its providers.'),
    listing,
    h('h2', {}, 'Vendor breakers'),
    h('p', { class: 'muted' },
      'A provider whose submits fail unavailable in a row is left alone for a while ([engine] breaker_failures, breaker_cooldown_secs).'),
    breakers);
}

function usage(account) {
  if (!account.usage.length) return '–';
  return h('ul', { class: 'plain' }, account.usage.map((u) =>
    h('li', {}, h('code', {}, u.model), ` ${u.tasks} ${u.tasks === 1 ? 'task' : 'tasks'}, ${u.credits} ${u.credits === 1 ? 'credit' : 'credits'}`)));
}

/** The columns an account shows its client and the operator; `name` renders the client. */
function accountColumns(name) {
  return [
    ['Client', name],
    ['Balance', (a) => a.balance],
    ['Reserved', (a) => a.reserved],
    ['Spent per model (succeeded tasks)', usage],
  ];
}

/** One limits row in words: `30 requests/minute · 4 tasks at once · …`. */
function limitWords(row) {
  return [
    row.requests_per_minute !== null && `${row.requests_per_minute} requests/minute`,
    row.concurrent_tasks !== null
      && `${row.concurrent_tasks} ${row.concurrent_tasks === 1 ? 'task' : 'tasks'} at once`,
    row.budget !== null && `${row.budget} credits per ${row.budget_period}`,
    row.priority !== null && `priority ${row.priority}`,
  ].filter(Boolean).join(' · ');
}

/**
 * A client's limit rows, client-wide first; with `edit` (the operator's page), each with a
 * button that loads it into the form.
 */
function limitList(answer, edit) {
  if (!answer.limits.length) return h('span', { class: 'muted' }, 'none');
  const scope = (row) => (row.model ? h('code', {}, row.model) : 'every model');
  return h('ul', { class: 'plain' }, answer.limits.map((row) => h('li', {
    'data-model': row.model ?? '',
  },
  edit
    ? h('button', { type: 'button', class: 'link edit-limit', onclick: () => edit(answer.client_id, row) }, scope(row))
    : scope(row),
  `: ${limitWords(row)}`)));
}

/**
 * The form that sets one scope of a client's limits through `PUT /admin/clients/{id}/limits`
 * (a row is replaced whole; every field empty removes it). `saved(answer)` gets the client's
 * rows as the route answers them.
 */
function limitsForm(clientIds, models, saved) {
  const number = (id, label, attrs) => {
    const input = h('input', { id, name: id, type: 'number', ...attrs });
    return [input, h('div', { class: 'field' }, h('label', { for: id }, label), input)];
  };
  const client = h('select', { id: 'limit-client', name: 'client' },
    clientIds.map((id) => h('option', { value: id }, id)));
  const model = h('select', { id: 'limit-model', name: 'model' },
    h('option', { value: '' }, 'every model'),
    models.map((m) => h('option', { value: m.id }, m.id)));
  const [rpm, rpmField] = number('limit-rpm', 'Requests per minute', { min: 0, step: 1 });
  const [tasks, tasksField] = number('limit-tasks', 'Tasks at once', { min: 0, step: 1 });
  const [budget, budgetField] = number('limit-budget', 'Budget (credits)', { min: 0, step: 'any' });
  const period = h('select', { id: 'limit-period', name: 'period' },
    ['', 'day', 'month'].map((p) => h('option', { value: p }, p || '–')));
  const [priority, priorityField] = number('limit-priority', 'Default priority', { step: 1 });
  const outcome = h('div', { id: 'limits-outcome' });
  const save = h('button', { type: 'submit', id: 'limits-save' }, 'Save');
  const numberIn = (input) => (input.value === '' ? null : Number(input.value));

  const submit = async (event) => {
    event.preventDefault();
    outcome.replaceChildren();
    save.disabled = true;
    const body = {
      requests_per_minute: numberIn(rpm),
      concurrent_tasks: numberIn(tasks),
      budget: numberIn(budget),
      budget_period: period.value || null,
      priority: numberIn(priority),
    };
    if (model.value) body.model = model.value;
    try {
      saved(await asAdmin('PUT', `/admin/clients/${encodeURIComponent(client.value)}/limits`, body));
      outcome.replaceChildren(h('p', { class: 'muted', role: 'status' }, `Saved the limits of ${client.value}.`));
    } catch (error) {
      outcome.replaceChildren(errorBox(error));
    } finally {
      save.disabled = false;
    }
  };

  // An outcome speaks of the last save: an edit makes it stale (and the browser's own check
  // of a field may block the next save before `submit` runs).
  const form = h('form', {
    id: 'limits-form', class: 'limits-form', onsubmit: submit, oninput: () => outcome.replaceChildren(),
  },
    h('div', { class: 'field' }, h('label', { for: 'limit-client' }, 'Client'), client),
    h('div', { class: 'field' }, h('label', { for: 'limit-model' }, 'Applies to'), model),
    rpmField, tasksField, budgetField,
    h('div', { class: 'field' }, h('label', { for: 'limit-period' }, 'Budget per'), period),
    priorityField,
    h('div', { class: 'field' }, save));
  const edit = (clientId, row) => {
    client.value = clientId;
    if (row.model && ![...model.options].some((o) => o.value === row.model)) {
      // A row kept for a model no longer served: still editable, and removable.
      model.append(h('option', { value: row.model }, row.model));
    }
    model.value = row.model ?? '';
    rpm.value = row.requests_per_minute ?? '';
    tasks.value = row.concurrent_tasks ?? '';
    budget.value = row.budget ?? '';
    period.value = row.budget_period ?? '';
    priority.value = row.priority ?? '';
    outcome.replaceChildren();
    form.scrollIntoView({ block: 'nearest' });
  };
  return { element: [form, outcome], edit };
}

async function operatorClients() {
  const [{ clients: accounts }, { models: served }] = await Promise.all([
    asAdmin('GET', '/admin/clients'), catalog()]);
  const limits = new Map(await Promise.all(accounts.map(async (a) => [a.client_id,
    await asAdmin('GET', `/admin/clients/${encodeURIComponent(a.client_id)}/limits`)])));
  const cells = new Map();
  const form = limitsForm(accounts.map((a) => a.client_id), served, (answer) => {
    cells.get(answer.client_id)?.replaceChildren(limitList(answer, form.edit));
  });
  const limitCell = (a) => {
    const cell = h('div', { class: 'limits', 'data-client': a.client_id }, limitList(limits.get(a.client_id), form.edit));
    cells.set(a.client_id, cell);
    return cell;
  };
  return h('section', { class: 'card' },
    h('h1', {}, 'Clients'),
    table([
      ...accountColumns((a) => h('a', { href: `#/tasks?client=${encodeURIComponent(a.client_id)}` }, a.client_id)),
      ['Limits', limitCell],
    ], accounts, 'No client yet.'),
    h('p', { class: 'muted' }, `As of ${time(new Date().toISOString())}.`),
    h('h2', {}, 'Set limits'),
    h('p', { class: 'muted' },
      'Saving replaces the row of that client and scope (every model, or one model); empty fields are no limit of that kind, and all empty removes the row. A limit row of one model applies on top of the client-wide one. Click a row above to edit it.'),
    form.element);
}

export async function clients() {
  if (session().admin) return operatorClients();
  const [account, limits] = await Promise.all([
    asClient('GET', '/api/v1/account'), asClient('GET', '/api/v1/limits')]);
  return h('section', { class: 'card' },
    h('h1', {}, 'Account'),
    table([
      ...accountColumns((a) => a.client_id),
      ['Limits (set by the operator)', (a) => h('div', { class: 'limits', 'data-client': a.client_id }, limitList(limits))],
    ], [account], 'No client yet.'),
    h('p', { class: 'muted' }, `As of ${time(new Date().toISOString())}.`));
}
