// The catalog: browse and search shared resources; suppliers register and edit their own.

import { html, useState } from '../vendor/htm-preact.js';
import { all, api, upload } from '../api.js';
import { label, t } from '../i18n.js';
import { Badge, ErrorBox, Field, Loaded, Table, navigate, useLoad } from '../ui.js';

const SHARE_TYPES = ['unconditional', 'conditional', 'not_shared'];
const SHARE_METHODS = ['interface', 'table', 'file'];
const CYCLES = ['real_time', 'daily', 'weekly', 'monthly', 'quarterly', 'yearly'];
const SENSITIVITIES = ['general', 'important', 'core'];
const MASKS = ['none', 'id_number', 'phone', 'name', 'address', 'redact'];
const SHARE_KIND = { unconditional: 'ok', conditional: 'warn', not_shared: 'bad' };
const FORMATS = ['database', 'spreadsheet', 'electronic_file', 'image', 'streaming', 'self_describing', 'other'];
const OPEN_TYPES = ['unconditional', 'conditional', 'not_open'];
const CLASSES = ['base', 'theme', 'department'];

export function ShareBadge({ type }) {
  return html`<${Badge} kind=${SHARE_KIND[type]}>${label('share_type', type)}<//>`;
}

// Department names by credit code, for showing codes as the names people know.
export async function departmentNames() {
  const departments = await all('/departments');
  return Object.fromEntries(departments.map((d) => [d.code, d.name]));
}

function matches(resource, needle) {
  if (!needle) return true;
  const text = [resource.code, resource.name, resource.summary, ...resource.items.flatMap((i) => [i.name, i.label])]
    .join(' ')
    .toLowerCase();
  return needle
    .toLowerCase()
    .split(/\s+/)
    .every((word) => text.includes(word));
}

export function Catalog({ me }) {
  const result = useLoad(async () => ({ resources: await all('/catalog/resources'), names: await departmentNames() }), []);
  const [needle, setNeedle] = useState('');
  const [shareType, setShareType] = useState('');
  const supplies = me.user.roles.includes('supplier_admin');
  return html`<section>
    <div class="heading">
      <h1>${t('nav.catalog')}</h1>
      ${supplies ? html`<a class="button primary" href="#/catalog/new">${t('catalog.new')}</a>` : null}
    </div>
    <div class="filters">
      <input type="search" name="q" placeholder=${t('catalog.search')} value=${needle} onInput=${(e) => setNeedle(e.target.value)} />
      <select name="share_type" value=${shareType} onChange=${(e) => setShareType(e.target.value)}>
        <option value="">${t('catalog.share_type')}: ${t('common.all')}</option>
        ${SHARE_TYPES.map((s) => html`<option value=${s}>${label('share_type', s)}</option>`)}
      </select>
    </div>
    <${Loaded} result=${result}>${({ resources, names }) => html`<${Table}
      testid="catalog"
      rows=${resources.filter((r) => matches(r, needle) && (!shareType || r.share_type === shareType))}
      onRow=${(r) => navigate(`#/catalog/${encodeURIComponent(r.code)}`)}
      columns=${[
        { title: t('catalog.code'), render: (r) => html`<code>${r.code}</code>` },
        { title: t('catalog.name'), key: 'name' },
        { title: t('catalog.supplier'), render: (r) => names[r.supplier] ?? r.supplier },
        { title: t('catalog.share_type'), render: (r) => html`<${ShareBadge} type=${r.share_type} />` },
        { title: t('catalog.update_cycle'), render: (r) => label('cycle', r.update_cycle) },
        { title: t('catalog.items'), render: (r) => r.items.length, className: 'num' },
        { title: t('catalog.version'), key: 'version', className: 'num' },
      ]}
    />`}<//>
    <${ServiceItems} admin=${me.user.roles.includes('platform_admin')} />
  </section>`;
}

// The service items (事项) with the list each came from; platform administrators import a
// list file (docs/service-items.md) and export the whole list.
function ServiceItems({ admin }) {
  const result = useLoad(() => all('/service-items'), []);
  const [outcome, setOutcome] = useState(null);
  const [error, setError] = useState(null);
  const importList = async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      setOutcome(await upload('/service-items/import', await file.text(), 'text/csv'));
      setError(null);
      result.reload();
    } catch (e) {
      setOutcome(null);
      setError(e);
    } finally {
      event.target.value = '';
    }
  };
  return html`<div class="heading"><h2>${t('catalog.service_item_list')}</h2>
      ${admin ? html`<label class="button">${t('catalog.import_list')}
        <input type="file" name="service_item_list" accept=".csv,text/csv" hidden onChange=${importList} /></label>` : null}
    </div>
    <${ErrorBox} error=${error} />
    ${outcome ? html`<p data-testid="import-outcome">${t('catalog.imported', { created: outcome.created.length, updated: outcome.updated.length, unchanged: outcome.unchanged })}</p>` : null}
    <${Loaded} result=${result}>${(items) => html`<${Table} testid="service-item-list" rows=${items.map((i) => ({ id: i.code, ...i }))} columns=${[
      { title: t('catalog.item_code'), render: (i) => html`<code>${i.code}</code>` },
      { title: t('catalog.item_name'), key: 'name' },
      { title: t('catalog.item_type'), key: 'item_type' },
      { title: t('catalog.ministry'), key: 'ministry' },
      { title: t('catalog.legal_basis'), key: 'legal_basis' },
      { title: t('catalog.source'), render: (i) => html`<span title=${`${i.source.by} ${i.source.at}`}>${i.source.list || label('origin', i.source.origin)}</span>` },
    ]} />`}<//>`;
}

export function ResourceDetail({ me, code }) {
  const result = useLoad(async () => ({ resource: await api(`/catalog/resources/${encodeURIComponent(code)}`), names: await departmentNames() }), [code]);
  return html`<section>
    <${Loaded} result=${result}>${({ resource: r, names }) => html`
      <div class="heading">
        <h1>${r.name} <small><code>${r.code}</code> v${r.version}</small></h1>
        ${me.department.code === r.supplier && me.user.roles.includes('supplier_admin')
          ? html`<a class="button" href=${`#/catalog/${encodeURIComponent(r.code)}/edit`}>${t('catalog.edit')}</a>`
          : null}
      </div>
      <dl class="kv">
        <dt>${t('catalog.supplier')}</dt><dd>${names[r.supplier] ?? r.supplier}</dd>
        <dt>${t('catalog.summary')}</dt><dd>${r.summary}</dd>
        <dt>${t('catalog.share_type')}</dt><dd><${ShareBadge} type=${r.share_type} /> ${r.share_condition ?? ''}</dd>
        <dt>${t('catalog.share_methods')}</dt><dd>${r.share_methods.map((m) => label('share_method', m)).join('、')}</dd>
        <dt>${t('catalog.update_cycle')}</dt><dd>${label('cycle', r.update_cycle)}</dd>
        <dt>${t('catalog.dataset')}</dt><dd><code>${r.dataset}</code></dd>
        <dt>${t('catalog.service_items')}</dt><dd>${r.service_items.join('、')}</dd>
        <dt>${t('catalog.format')}</dt><dd data-testid="resource-format">${label('format', r.format)}</dd>
        <dt>${t('catalog.open_type')}</dt><dd>${label('open_type', r.open_type)}</dd>
        <dt>${t('catalog.class')}</dt><dd>${label('class', r.class)}</dd>
        <dt>${t('catalog.related')}</dt><dd>${r.related_resources.map((c) => html`<a href=${`#/catalog/${encodeURIComponent(c)}`}><code>${c}</code></a> `)}</dd>
        <dt>${t('catalog.legal_basis')}</dt><dd>${r.legal_basis}</dd>
      </dl>
      <h2>${t('catalog.items')}</h2>
      <${Table} testid="items" rows=${r.items} columns=${[
        { title: t('catalog.item.name'), render: (i) => html`<code>${i.name}</code>` },
        { title: t('catalog.item.label'), key: 'label' },
        { title: t('catalog.item.type'), key: 'data_type' },
        { title: t('catalog.share_type'), render: (i) => html`<${ShareBadge} type=${i.share_type} />` },
        { title: t('catalog.item.sensitivity'), render: (i) => label('sensitivity', i.sensitivity) },
        { title: t('catalog.item.personal'), render: (i) => (i.personal ? t('common.yes') : t('common.no')) },
        { title: t('catalog.item.mask'), render: (i) => label('mask', i.default_mask) },
        { title: t('catalog.item.required'), render: (i) => (i.required ? t('common.yes') : '') },
      ]} />
      ${me.user.roles.includes('demander') && r.share_type !== 'not_shared'
        ? html`<p><a class="button primary" href=${`#/demands/new?resource=${encodeURIComponent(r.code)}`}>${t('demands.new')}</a></p>`
        : null}
    `}<//>
  </section>`;
}

const INPUT_KEYS = ['code', 'name', 'summary', 'share_type', 'share_condition', 'share_methods', 'update_cycle', 'dataset', 'items',
  'service_items', 'division_item', 'format', 'open_type', 'class', 'related_resources', 'legal_basis'];

function inputOf(resource) {
  return Object.fromEntries(INPUT_KEYS.map((k) => [k, resource[k]]));
}

const EMPTY = {
  code: '',
  name: '',
  summary: '',
  share_type: 'conditional',
  share_condition: null,
  share_methods: ['interface'],
  update_cycle: 'daily',
  dataset: '',
  items: [],
  service_items: [],
  division_item: null,
  format: 'database',
  open_type: 'not_open',
  class: 'department',
  related_resources: [],
  legal_basis: '',
};

const EMPTY_ITEM = { name: '', label: '', data_type: 'Utf8', sensitivity: 'general', personal: false, default_mask: 'none', share_type: 'unconditional', required: false };

function Select({ name, value, options, group, onChange }) {
  return html`<select name=${name} value=${value} onChange=${(e) => onChange(e.target.value)}>
    ${options.map((o) => html`<option value=${o}>${label(group, o)}</option>`)}
  </select>`;
}

// Registers a new resource (no `code`) or stores the next version of an existing one.
export function ResourceEditor({ me, code }) {
  const result = useLoad(async () => {
    const serviceItems = await all('/service-items');
    if (!code) return { version: null, input: { ...EMPTY }, serviceItems };
    const resource = await api(`/catalog/resources/${encodeURIComponent(code)}`);
    return { version: resource.version, input: inputOf(resource), serviceItems };
  }, [code]);
  return html`<section>
    <h1>${code ? t('catalog.edit') : t('catalog.new')}</h1>
    <${Loaded} result=${result}>${(loaded) => html`<${EditorForm} me=${me} loaded=${loaded} />`}<//>
  </section>`;
}

function EditorForm({ loaded }) {
  const [input, setInput] = useState(loaded.input);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (patch) => setInput({ ...input, ...patch });
  const setItem = (index, patch) => set({ items: input.items.map((item, i) => (i === index ? { ...item, ...patch } : item)) });
  const toggle = (list, value) => (list.includes(value) ? list.filter((v) => v !== value) : [...list, value]);
  const save = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = { ...input, share_condition: input.share_condition || null, division_item: input.division_item || null };
      const saved = loaded.version === null
        ? await api('/catalog/resources', { method: 'POST', body })
        : await api(`/catalog/resources/${encodeURIComponent(input.code)}`, { method: 'PUT', body: { version: loaded.version, resource: body } });
      navigate(`#/catalog/${encodeURIComponent(saved.code)}`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="card" onSubmit=${save}>
    <div class="grid">
      <${Field} label=${t('catalog.code')}><input name="code" required value=${input.code} disabled=${loaded.version !== null}
        onInput=${(e) => set({ code: e.target.value.trim() })} /><//>
      <${Field} label=${t('catalog.name')}><input name="name" required value=${input.name} onInput=${(e) => set({ name: e.target.value })} /><//>
      <${Field} label=${t('catalog.dataset')}><input name="dataset" required value=${input.dataset} onInput=${(e) => set({ dataset: e.target.value.trim() })} /><//>
      <${Field} label=${t('catalog.division_item')}><input name="division_item" value=${input.division_item ?? ''} onInput=${(e) => set({ division_item: e.target.value.trim() })} /><//>
      <${Field} label=${t('catalog.share_type')}><${Select} name="share_type" value=${input.share_type} options=${SHARE_TYPES} group="share_type" onChange=${(v) => set({ share_type: v })} /><//>
      <${Field} label=${t('catalog.update_cycle')}><${Select} name="update_cycle" value=${input.update_cycle} options=${CYCLES} group="cycle" onChange=${(v) => set({ update_cycle: v })} /><//>
      <${Field} label=${t('catalog.share_condition')} wide><input name="share_condition" value=${input.share_condition ?? ''} onInput=${(e) => set({ share_condition: e.target.value })} /><//>
      <${Field} label=${t('catalog.summary')} wide><textarea name="summary" rows="2" value=${input.summary} onInput=${(e) => set({ summary: e.target.value })}></textarea><//>
      <${Field} label=${t('catalog.format')}><${Select} name="format" value=${input.format} options=${FORMATS} group="format" onChange=${(v) => set({ format: v })} /><//>
      <${Field} label=${t('catalog.open_type')}><${Select} name="open_type" value=${input.open_type} options=${OPEN_TYPES} group="open_type" onChange=${(v) => set({ open_type: v })} /><//>
      <${Field} label=${t('catalog.class')}><${Select} name="class" value=${input.class} options=${CLASSES} group="class" onChange=${(v) => set({ class: v })} /><//>
      <${Field} label=${t('catalog.related')}><input name="related_resources" value=${input.related_resources.join(' ')}
        onInput=${(e) => set({ related_resources: e.target.value.split(/[\s,，]+/).filter(Boolean) })} /><//>
      <${Field} label=${t('catalog.legal_basis')} wide><input name="legal_basis" value=${input.legal_basis} onInput=${(e) => set({ legal_basis: e.target.value })} /><//>
    </div>
    <fieldset><legend>${t('catalog.share_methods')}</legend>
      ${SHARE_METHODS.map((m) => html`<label class="check"><input type="checkbox" checked=${input.share_methods.includes(m)}
        onChange=${() => set({ share_methods: toggle(input.share_methods, m) })} /> ${label('share_method', m)}</label>`)}
    </fieldset>
    <fieldset><legend>${t('catalog.service_items')}</legend>
      <div class="checks">${loaded.serviceItems.map((s) => html`<label class="check"><input type="checkbox" checked=${input.service_items.includes(s.code)}
        onChange=${() => set({ service_items: toggle(input.service_items, s.code) })} /> ${s.name} (${s.code})</label>`)}</div>
    </fieldset>
    <fieldset><legend>${t('catalog.items')}</legend>
      <div class="table-wrap"><table class="editor">
        <thead><tr>
          <th>${t('catalog.item.name')}</th><th>${t('catalog.item.label')}</th><th>${t('catalog.item.type')}</th>
          <th>${t('catalog.share_type')}</th><th>${t('catalog.item.sensitivity')}</th><th>${t('catalog.item.mask')}</th>
          <th>${t('catalog.item.personal')}</th><th>${t('catalog.item.required')}</th><th></th>
        </tr></thead>
        <tbody>${input.items.map((item, i) => html`<tr key=${i}>
          <td><input name=${`items.${i}.name`} required value=${item.name} onInput=${(e) => setItem(i, { name: e.target.value.trim() })} /></td>
          <td><input name=${`items.${i}.label`} required value=${item.label} onInput=${(e) => setItem(i, { label: e.target.value })} /></td>
          <td><input name=${`items.${i}.data_type`} value=${item.data_type} size="6" onInput=${(e) => setItem(i, { data_type: e.target.value.trim() })} /></td>
          <td><${Select} value=${item.share_type} options=${SHARE_TYPES} group="share_type" onChange=${(v) => setItem(i, { share_type: v })} /></td>
          <td><${Select} value=${item.sensitivity} options=${SENSITIVITIES} group="sensitivity" onChange=${(v) => setItem(i, { sensitivity: v })} /></td>
          <td><${Select} value=${item.default_mask} options=${MASKS} group="mask" onChange=${(v) => setItem(i, { default_mask: v })} /></td>
          <td><input type="checkbox" checked=${item.personal} onChange=${() => setItem(i, { personal: !item.personal })} /></td>
          <td><input type="checkbox" checked=${item.required} onChange=${() => setItem(i, { required: !item.required })} /></td>
          <td><button type="button" class="link" onClick=${() => set({ items: input.items.filter((_, j) => j !== i) })}>${t('catalog.item.remove')}</button></td>
        </tr>`)}</tbody>
      </table></div>
      <button type="button" onClick=${() => set({ items: [...input.items, { ...EMPTY_ITEM }] })}>${t('catalog.item.add')}</button>
    </fieldset>
    <${ErrorBox} error=${error} />
    <div class="row">
      <button type="submit" class="primary" disabled=${busy}>${t('common.save')}</button>
      <a class="button" href="#/catalog">${t('common.cancel')}</a>
    </div>
  </form>`;
}
