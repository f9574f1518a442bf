// Tasks: a filtered list that keeps itself current, and one task's page with its request,
// usage, error, outputs and webhook deliveries. The operator sees every client's tasks; a
// client sees its own.

import { h, errorBox, badge, progressBar, time, jsonBlock, table, media, every } from './view.js';
import { asAdmin, catalog, session, tasks, TERMINAL } from './api.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'expired', 'cancelled'];

/** Cancels `id`; the page's own refresh shows the outcome. */
export function cancelButton(id) {
  const refused = h('span');
  const button = h('button', {
    type: 'button',
    class: 'danger cancel',
    onclick: async () => {
      button.disabled = true;
      refused.replaceChildren();
      try {
        await tasks.cancel(id);
      } catch (error) {
        refused.replaceChildren(errorBox(error));
        button.disabled = false;
      }
    },
  }, 'Cancel');
  return h('span', {}, button, refused);
}

/**
 * Status, progress, cancel, error and outputs of job `id`, kept current by `update(job)`. The
 * cancel button and a refusal it shows stay put between updates, and the outputs are drawn
 * again only when they change (a playing video is not restarted by a poll).
 */
export function jobView(id) {
  const line = h('span');
  const cancel = cancelButton(id);
  const results = h('div');
  const element = h('div', { class: 'job', id: 'job' },
    h('p', { class: 'status-line' }, line, ' ', cancel), results);
  let drawn = null;
  const update = (job) => {
    element.dataset.status = job.status;
    line.replaceChildren(badge(job.status), ' ', progressBar(job.progress), ' ',
      h('a', { href: `#/tasks/${encodeURIComponent(job.id)}` }, job.id));
    cancel.hidden = TERMINAL.includes(job.status);
    const seen = JSON.stringify([job.error, job.outputs, job.texts]);
    if (seen === drawn) return;
    drawn = seen;
    // `replaceChildren` writes a null or an array as text: only nodes go in.
    results.replaceChildren(...[
      job.error ? h('p', { class: 'error task-error' }, job.error) : null,
      job.outputs?.length ? h('div', { class: 'outputs' }, job.outputs.map(media)) : null,
      ...(job.texts || []).map((text) => h('blockquote', {}, text)),
    ].filter(Boolean));
  };
  return { element, update };
}

function select(name, choices, chosen, all) {
  return h('select', { id: `filter-${name}`, name },
    h('option', { value: '' }, all),
    choices.map((choice) => h('option', { value: choice, selected: choice === chosen }, choice)));
}

async function filters(query) {
  const { models } = await catalog();
  const capabilities = [...new Set(models.flatMap((m) => m.capabilities))].sort();
  const fields = [
    select('status', STATUSES, query.get('status'), 'any status'),
    select('capability', capabilities, query.get('capability'), 'any capability'),
    select('model', models.map((m) => m.id), query.get('model'), 'any model'),
  ];
  if (session().admin) {
    const { clients } = await asAdmin('GET', '/admin/clients');
    fields.push(select('client', clients.map((c) => c.client_id), query.get('client'), 'any client'));
  }
  const form = h('form', { class: 'filters', id: 'filters' }, fields);
  form.addEventListener('change', () => {
    const chosen = new URLSearchParams();
    for (const field of fields) if (field.value) chosen.set(field.name, field.value);
    location.hash = `#/tasks?${chosen}`;
  });
  return form;
}

export async function taskList(page, query) {
  const operator = Boolean(session().admin);
  const listing = h('div', { id: 'task-list' });
  const asked = Object.fromEntries(['status', 'capability', 'model', 'client', 'before']
    .filter((name) => query.get(name) && (operator || name !== 'client'))
    .map((name) => [name, query.get(name)]));
  asked.limit = '50';
  const columns = [
    ['Task', (t) => h('a', { href: `#/tasks/${encodeURIComponent(t.id)}` }, t.id)],
    ['Status', (t) => badge(t.status)],
    ['Progress', (t) => progressBar(t.progress)],
    ['Capability', (t) => t.capability],
    ['Model', (t) => t.model],
    operator ? ['Client', (t) => t.clientId] : null,
    ['Created', (t) => time(t.createdAt)],
    ['', (t) => (TERMINAL.includes(t.status) ? '' : cancelButton(t.id))],
  ].filter(Boolean);
  let shown = '';
  every(2000, async () => {
    try {
      const answer = await tasks.list(asked);
      const seen = JSON.stringify(answer);
      if (seen === shown) return true;
      shown = seen;
      const older = answer.nextBefore
        ? h('a', { href: `#/tasks?${new URLSearchParams({ ...asked, before: answer.nextBefore })}` }, 'Older →')
        : null;
      listing.replaceChildren(...[table(columns, answer.jobs, 'No task matches.'), older].filter(Boolean));
    } catch (error) {
      listing.replaceChildren(errorBox(error));
      shown = '';
    }
    return true;
  }, page);
  return h('section', { class: 'card' }, h('h1', {}, operator ? 'Tasks (every client)' : 'Tasks'),
    await filters(query), listing);
}

// The reservation and what became of it: kept on success, given back otherwise.
function credits(job) {
  if (job.refundedCredits) return `${job.refundedCredits} reserved, refunded`;
  if (job.chargedCredits != null) return `${job.chargedCredits} charged`;
  return `${job.reservedCredits} reserved`;
}

function facts(job) {
  const rows = [
    ['Client', job.clientId], ['API', job.api], ['Capability', job.capability],
    ['Model', job.model], ['Prompt', job.prompt || '–'], ['Created', time(job.createdAt)],
    ['Started', time(job.startedAt)], ['Finished', time(job.finishedAt)],
    ['Credits', credits(job)], ['Priority', job.priority], ['Attempts', job.attempts],
  ];
  if (job.queuePosition) rows.push(['Queue position', job.queuePosition]);
  return h('dl', { class: 'facts' }, rows.map(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]));
}

function webhooks(job) {
  if (!job.webhookUrl) return h('p', { class: 'muted' }, 'No webhook.');
  return h('div', { class: 'webhook' }, h('p', {}, 'To ', h('code', {}, job.webhookUrl)), table([
    ['Written', (d) => time(d.createdAt)],
    ['Attempts', (d) => d.attempts],
    ['Delivered', (d) => time(d.deliveredAt)],
    ['Gave up', (d) => time(d.gaveUpAt)],
    ['Next attempt', (d) => time(d.nextAttemptAt)],
    ['Last error', (d) => d.lastError || '–'],
  ], job.webhookDeliveries, 'Nothing sent yet: the webhook is written when the task ends.'));
}

export async function taskPage(page, id) {
  const view = jobView(id);
  const details = h('div');
  const body = h('div', { id: 'task' }, h('p', { class: 'muted' }, 'Loading…'));
  let shown = '';
  every(1000, async () => {
    try {
      const { job } = await tasks.get(id);
      if (!shown) body.replaceChildren(view.element, details);
      view.update(job);
      const seen = JSON.stringify(job);
      if (seen !== shown) {
        shown = seen;
        details.replaceChildren(facts(job),
          h('h2', {}, 'Usage'), job.usage ? jsonBlock(job.usage) : h('p', { class: 'muted' }, 'None recorded yet.'),
          h('h2', {}, 'Request'), jsonBlock(job.request),
          h('h2', {}, 'Webhook'), webhooks(job));
      }
      const delivering = job.webhookDeliveries.some((d) => !d.deliveredAt && !d.gaveUpAt);
      return !TERMINAL.includes(job.status) || delivering;
    } catch (error) {
      body.replaceChildren(errorBox(error));
      shown = '';
      return false;
    }
  }, page);
  return h('section', { class: 'card' }, h('h1', {}, 'Task ', h('code', {}, id)), body);
}
