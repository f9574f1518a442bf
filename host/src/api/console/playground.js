// The playground: pick a model, fill in the form its parameter schema makes, attach input
// files, run it through the jobs API and watch it until it ends, its outputs shown inline.

import { h, errorBox, every } from './view.js';
import { asClient, catalog, session, TERMINAL } from './api.js';
import { schemaForm } from './form.js';
import { jobView } from './tasks.js';

/** The capabilities the jobs API runs (chat goes through the chat routes instead). */
const runnable = (model) => model.capabilities.filter((c) => c !== 'chat');

function modelPicker(models) {
  const kinds = [...new Set(models.map((m) => m.kind))];
  const preferred = models.find((m) => m.defaultFor.includes('image.generate')) || models[0];
  return h('select', { id: 'model', name: 'model' },
    kinds.map((kind) => h('optgroup', { label: kind },
      models.filter((m) => m.kind === kind).map((m) => h('option', {
        value: m.id, selected: m.id === preferred.id,
      }, m.name && m.name !== m.key ? `${m.id} · ${m.name}` : m.id)))));
}

export async function playground(page) {
  if (!session().client) {
    return h('section', { class: 'card' }, h('h1', {}, 'Playground'),
      h('p', {}, 'Running jobs needs a client key. ', h('a', { href: '#/signin' }, 'Add one.')));
  }
  const models = (await catalog()).models.filter((m) => runnable(m).length);
  if (!models.length) {
    return h('section', { class: 'card' }, h('h1', {}, 'Playground'),
      h('p', {}, 'No model that the jobs API runs is served.'));
  }
  const model = modelPicker(models);
  const capability = h('select', { id: 'capability', name: 'capability' });
  const prompt = h('textarea', { id: 'prompt', name: 'prompt', rows: 3, placeholder: 'What to make' });
  const files = h('input', { id: 'files', name: 'files', type: 'file', multiple: true });
  const params = h('div');
  const outcome = h('div', { id: 'outcome' });
  const run = h('button', { type: 'submit', id: 'run' }, 'Run');
  let form = null;
  let following = null;

  const choose = () => {
    const chosen = models.find((m) => m.id === model.value);
    // The model's own first capability (its main one: generate before edit or upscale).
    capability.replaceChildren(...runnable(chosen).map((c) => h('option', { value: c }, c)));
    form = schemaForm(chosen.paramsSchema, ['prompt']);
    params.replaceChildren(form.element);
  };
  model.addEventListener('change', choose);
  choose();

  const follow = (id) => {
    following = id;
    const view = jobView(id);
    every(700, async () => {
      if (following !== id) return false;
      try {
        const { job } = await asClient('GET', `/api/v1/jobs/${encodeURIComponent(id)}/detail`);
        if (following !== id) return false;
        if (view.element.parentNode !== outcome) outcome.replaceChildren(view.element);
        view.update(job);
        return !TERMINAL.includes(job.status);
      } catch (error) {
        outcome.replaceChildren(errorBox(error));
        return false;
      }
    }, page);
  };

  const submit = async (event) => {
    event.preventDefault();
    // The job followed so far stops drawing here: it would cover this run's refusal.
    following = null;
    outcome.replaceChildren();
    run.disabled = true;
    try {
      const body = { ...form.values(), capability: capability.value, model: model.value };
      if (prompt.value.trim()) body.prompt = prompt.value;
      if (files.files.length) {
        const upload = new FormData();
        for (const file of files.files) upload.append('files', file, file.name);
        const { assets } = await asClient('POST', '/api/v1/assets', upload);
        body.inputAssetIds = assets.map((asset) => asset.id);
      }
      const { job } = await asClient('POST', '/api/v1/jobs', body);
      follow(job.id);
    } catch (error) {
      outcome.replaceChildren(errorBox(error));
    } finally {
      run.disabled = false;
    }
  };

  outcome.append(h('p', { class: 'muted' }, 'Run a job to watch it here.'));
  return h('section', { class: 'card' },
    h('h1', {}, 'Playground'),
    h('div', { class: 'split' }, h('form', { id: 'playground', onsubmit: submit },
      h('div', { class: 'field' }, h('label', { for: 'model' }, 'Model'), model),
      h('div', { class: 'field' }, h('label', { for: 'capability' }, 'Capability'), capability),
      h('div', { class: 'field' }, h('label', { for: 'prompt' }, 'Prompt'), prompt),
      params,
      h('div', { class: 'field' }, h('label', { for: 'files' }, 'Input files'), files,
        h('small', {}, 'Uploaded as assets and sent as inputAssetIds.')),
      run),
    outcome));
}
