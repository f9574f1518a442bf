// The console's shell: signing in, the navigation, and which page the address shows
// (`#/playground`, `#/tasks?status=…`, `#/tasks/<id>`, `#/models`, `#/plugins`, `#/workers`,
// `#/clients`).

import { h, errorBox } from './view.js';
import { session, signIn, signOut, takeRefusal } from './api.js';
import { playground } from './playground.js';
import { taskList, taskPage } from './tasks.js';
import { models, plugins, workers, clients } from './operator.js';

const main = document.getElementById('view');

/** What a page may hold on to: it stops its timers when the reader goes elsewhere. */
class Page {
  constructor() {
    this.gone = false;
    this.leaving = [];
  }

  onLeave(work) {
    this.leaving.push(work);
  }

  leave() {
    this.gone = true;
    this.leaving.forEach((work) => work());
  }
}

let current = null;

/** A part of the address as written when it is no valid percent-encoding (a typed address). */
function decoded(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function address() {
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  return {
    parts: (path || '/').split('/').filter(Boolean).map(decoded),
    query: new URLSearchParams(query || ''),
  };
}

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function header(signedIn) {
  const links = [];
  if (signedIn.client) links.push(['playground', 'Playground']);
  links.push(['tasks', 'Tasks'], ['models', 'Models']);
  if (signedIn.admin) links.push(['plugins', 'Plugins'], ['workers', 'Workers']);
  links.push(['clients', signedIn.admin ? 'Clients' : 'Account']);
  const here = address().parts[0];
  document.getElementById('nav').replaceChildren(
    ...(signedIn.client || signedIn.admin
      ? links.map(([name, title]) => h('a', { href: `#/${name}`, class: name === here ? 'here' : '' }, title))
      : []));
  const roles = [
    signedIn.client && `client ${signedIn.client.id}`,
    signedIn.admin && 'operator',
  ].filter(Boolean);
  document.getElementById('who').replaceChildren(...(roles.length
    ? [h('span', { id: 'roles' }, roles.join(' · ')),
      h('a', { href: '#/signin' }, 'Add a key'),
      h('button', { type: 'button', class: 'link', id: 'signout', onclick: () => { signOut(); go('#/signin'); } }, 'Sign out')]
    : []));
}

function signInPage() {
  const signedIn = session();
  const key = h('input', { id: 'key', name: 'key', type: 'password', required: true, autocomplete: 'off', placeholder: 'sk-…' });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const refused = takeRefusal();
  const outcome = h('div', { id: 'signin-outcome' }, ...(refused ? [errorBox(refused)] : []));
  const submit = async (event) => {
    event.preventDefault();
    outcome.replaceChildren();
    button.disabled = true;
    try {
      await signIn(key.value.trim());
      go('#/');
    } catch (error) {
      outcome.replaceChildren(errorBox(error));
    } finally {
      button.disabled = false;
    }
  };
  const already = signedIn.client || signedIn.admin;
  return h('section', { class: 'card narrow' },
    h('h1', {}, already ? 'Add a key' : 'Sign in'),
    h('p', { class: 'muted' },
      'A client key shows that client\'s own tasks and runs jobs; the admin key shows everything. ',
      'Add both to run jobs and oversee the host in one tab. Keys stay in this tab only.'),
    h('form', { id: 'signin', onsubmit: submit },
      h('label', { for: 'key' }, 'API key'), key, button),
    outcome);
}

const PAGES = {
  playground,
  tasks: (page, parts, query) => (parts[1] ? taskPage(page, parts[1]) : taskList(page, query)),
  models,
  plugins,
  workers,
  clients,
};

async function render() {
  current?.leave();
  const page = new Page();
  current = page;
  const signedIn = session();
  header(signedIn);
  const { parts, query } = address();
  let name = parts[0];
  if (!(signedIn.client || signedIn.admin) || name === 'signin') name = 'signin';
  else if (!PAGES[name]) name = signedIn.client ? 'playground' : 'tasks';
  main.dataset.page = name;
  document.title = `easel · ${name}`;
  if (name === 'signin') {
    main.replaceChildren(signInPage());
    document.getElementById('key').focus();
    return;
  }
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const content = await PAGES[name](page, parts, query);
    if (!page.gone) main.replaceChildren(content);
  } catch (error) {
    if (!page.gone) main.replaceChildren(errorBox(error));
  }
}

window.addEventListener('hashchange', render);
// A key the host stopped taking: the header drops it, and with no key left, sign in again.
window.addEventListener('easel-signed-out', () => {
  const signedIn = session();
  if (signedIn.client || signedIn.admin) header(signedIn);
  else go('#/signin');
});
render();
