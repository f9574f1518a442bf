// A form made from a model's parameter JSON Schema: enums become selects, numbers inputs
// bounded by the schema's range, booleans checkboxes, anything structured a JSON text box;
// defaults are filled in. The host checks the values again against the whole schema.

import { h } from './view.js';

/** The first non-null type a property declares. */
function typeOf(property) {
  const types = [].concat(property.type ?? []).filter((t) => t !== 'null');
  if (types.length) return types[0];
  if (property.enum) return 'enum';
  return 'json';
}

/** The choices of `enum`, or of a `oneOf`/`anyOf` made only of `const`s. */
function choicesOf(property) {
  if (Array.isArray(property.enum)) return property.enum;
  const options = property.oneOf || property.anyOf;
  if (Array.isArray(options) && options.length && options.every((o) => 'const' in o)) {
    return options.map((o) => o.const);
  }
  return null;
}

function bounds(property) {
  const min = property.minimum ?? property.exclusiveMinimum;
  const max = property.maximum ?? property.exclusiveMaximum;
  return { min, max };
}

/** One field: its input and how its value is read back (undefined: not sent). */
function field(name, property, required) {
  const id = `param-${name}`;
  const type = typeOf(property);
  const choices = choicesOf(property);
  const has = property.default !== undefined;
  let input;
  let read;
  if (choices) {
    input = h('select', { id, name, required },
      has && !required ? null : h('option', { value: '' }, required ? 'choose…' : '(none)'),
      choices.map((choice) => h('option', {
        value: JSON.stringify(choice),
        selected: has && JSON.stringify(choice) === JSON.stringify(property.default),
      }, String(choice))));
    read = () => (input.value === '' ? undefined : JSON.parse(input.value));
  } else if (type === 'boolean') {
    input = h('input', { id, name, type: 'checkbox', checked: property.default === true });
    read = () => input.checked;
  } else if (type === 'integer' || type === 'number') {
    const { min, max } = bounds(property);
    input = h('input', {
      id, name, type: 'number', required, inputmode: type === 'integer' ? 'numeric' : 'decimal',
      min: min ?? undefined, max: max ?? undefined,
      step: type === 'integer' ? (property.multipleOf ?? 1) : (property.multipleOf ?? 'any'),
      value: has ? String(property.default) : undefined,
      placeholder: min !== undefined && max !== undefined ? `${min} – ${max}` : undefined,
    });
    read = () => (input.value === '' ? undefined : Number(input.value));
  } else if (type === 'string') {
    input = h('input', {
      id, name, required, type: property.format === 'uri' ? 'url' : 'text',
      minlength: property.minLength, maxlength: property.maxLength, pattern: property.pattern,
      value: has ? property.default : undefined,
    });
    read = () => (input.value === '' ? undefined : input.value);
  } else {
    input = h('textarea', {
      id, name, required, rows: 2, class: 'code', placeholder: 'JSON',
      value: has ? JSON.stringify(property.default) : '',
    });
    read = () => {
      if (input.value.trim() === '') return undefined;
      try {
        return JSON.parse(input.value);
      } catch {
        input.setCustomValidity('Not valid JSON');
        input.reportValidity();
        throw new Error(`${name} is not valid JSON.`);
      }
    };
    input.addEventListener('input', () => input.setCustomValidity(''));
  }
  const label = h('label', { for: id }, property.title || name);
  const help = property.description ? h('small', {}, property.description) : null;
  return { element: h('div', { class: 'field' }, label, input, help), name, read };
}

/**
 * The fields of `schema`'s properties, except the names in `skip` (fields the page asks for
 * itself, such as the prompt). `values()` reads what is filled in.
 */
export function schemaForm(schema, skip = []) {
  const required = new Set(schema?.required || []);
  const fields = Object.entries(schema?.properties || {})
    .filter(([name]) => !skip.includes(name))
    .map(([name, property]) => field(name, property || {}, required.has(name)));
  const element = h('fieldset', { class: 'params' },
    h('legend', {}, 'Parameters'),
    fields.length ? fields.map((f) => f.element) : h('p', { class: 'muted' }, 'This model takes no parameters.'));
  const values = () => {
    const out = {};
    for (const f of fields) {
      const value = f.read();
      if (value !== undefined) out[f.name] = value;
    }
    return out;
  };
  return { element, values };
}
