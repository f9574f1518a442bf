// Building blocks every page uses: elements made without HTML strings (so nothing an API
// returns is ever parsed as markup), and the few ways the console shows a value.

/** An element with attributes (`on*` functions become listeners) and children. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'value' || (name in element && typeof value !== 'string')) {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : value);
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** A refusal or failure, worded as the API worded it. */
export function errorBox(error) {
  return h('p', { class: 'error', role: 'alert' }, error.message || String(error));
}

/** A task status as a coloured badge. */
export function badge(status) {
  return h('span', { class: `badge ${status}` }, status);
}

/** Progress from 0 to 1 as a bar with its percentage. */
export function progressBar(progress) {
  const percent = Math.round((progress || 0) * 100);
  return h('span', { class: 'progress' },
    h('progress', { max: 100, value: percent }), ` ${percent}%`);
}

/** An RFC 3339 time in the reader's locale; a dash for none. */
export function time(text) {
  return text ? new Date(text).toLocaleString() : '–';
}

/** Bytes in a readable unit. */
export function bytes(count) {
  if (count === null || count === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

/** JSON, indented, in a block. */
export function jsonBlock(value) {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

/** A table: `columns` are `[heading, cell(row)]` pairs. */
export function table(columns, rows, empty = 'Nothing yet.') {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('thead', {}, h('tr', {}, columns.map(([heading]) => h('th', {}, heading)))),
      h('tbody', {}, rows.map((row) => h('tr', {},
        columns.map(([heading, cell]) => h('td', { 'data-label': heading }, cell(row))))))));
}

/** An output file shown inline (image, video, audio) with its download link. */
export function media(output) {
  const kind = output.kind || (output.contentType || '').split('/')[0];
  let shown = null;
  if (kind === 'image') {
    shown = h('img', { src: output.url, alt: output.name, class: 'output' });
  } else if (kind === 'video') {
    shown = h('video', { src: output.url, controls: true, class: 'output', preload: 'metadata' });
  } else if (kind === 'audio') {
    shown = h('audio', { src: output.url, controls: true, preload: 'metadata' });
  }
  return h('figure', { class: 'media' }, shown,
    h('figcaption', {},
      h('a', { href: output.url, download: output.name, class: 'download' }, 'Download'),
      ` ${output.name} · ${output.contentType} · ${bytes(output.size)}`));
}

/** Runs `work` now and every `ms` until the page changes; `work` returns false to stop. */
export function every(ms, work, page) {
  let timer = null;
  const tick = async () => {
    if (page.gone) return;
    const more = await work();
    if (more !== false && !page.gone) timer = setTimeout(tick, ms);
  };
  page.onLeave(() => clearTimeout(timer));
  tick();
}
