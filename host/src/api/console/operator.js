// What the host serves and for whom: models per provider, the plugins folder (with its
// reload button), the fleet's live workers and the clients' balances and spending. A client
// sees the models and its own account; the rest needs the admin key.

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
      ['Last error', (p) => (p.last_error ? h('span', { class: 'error plugin-error' }, p.last_error) : '–')],
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
    ['Host', (w) => w.host],
    ['Providers', (w) => w.providers.join(', ') || '–'],
    ['Models', (w) => w.models.join(', ') || '–'],
    ['Submitting', (w) => `${w.submitting} of ${w.capacity}`],
    ['Diffusion model', (w) => (w.modelLoaded ? 'loaded' : '–')],
    ['Version', (w) => w.version],
    ['Started', (w) => time(w.startedAt)],
    ['Last seen', (w) => time(w.lastSeen)],
  ], answer.workers, 'No live worker: queued tasks wait for one.');
}

export async function workers(page) {
  const listing = h('div', { id: 'worker-list' });
  // A worker heartbeats every third of its lease; a dead one drops out after its lease.
  every(3000, async () => {
    try {
      listing.replaceChildren(workerTable(await asAdmin('GET', '/admin/workers')));
    } catch (error) {
      listing.replaceChildren(errorBox(error));
    }
  }, page);
  return h('section', { class: 'card' },
    h('h1', {}, 'Workers'),
    h('p', { class: 'muted' },
      'Each process that runs tasks, while it heartbeats; it claims only the tasks of its providers.'),
    listing);
}

function usage(account) {
  if (!account.usage.length) return '–';
  return h('ul', { class: 'plain' }, account.usage.map((u) =>
    h('li', {}, h('code', {}, u.model), ` ${u.tasks} tasks, ${u.credits} credits`)));
}

export async function clients() {
  const operator = Boolean(session().admin);
  const accounts = operator
    ? (await asAdmin('GET', '/admin/clients')).clients
    : [await asClient('GET', '/api/v1/account')];
  return h('section', { class: 'card' },
    h('h1', {}, operator ? 'Clients' : 'Account'),
    table([
      ['Client', (a) => (operator
        ? h('a', { href: `#/tasks?client=${encodeURIComponent(a.client_id)}` }, a.client_id)
        : a.client_id)],
      ['Balance', (a) => a.balance],
      ['Reserved', (a) => a.reserved],
      ['Spent per model (succeeded tasks)', usage],
    ], accounts, 'No client yet.'),
    h('p', { class: 'muted' }, `As of ${time(new Date().toISOString())}.`));
}
