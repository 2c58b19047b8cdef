// Electronic licences and certificates (电子证照): the licence types, verification of a
// document a person presents at a counter, and, for the issuing department's data
// administrators, the look-up of licences of their own registers (with revocation) and the
// seal certificates their sealing systems use. The gateway decides who may do what; this page
// only leaves out what the role could not use.

import { html, useState } from '../vendor/htm-preact.js';
import { all, api } from '../api.js';
import { label, t } from '../i18n.js';
import { Badge, ErrorBox, Field, Loaded, Table, formatTime, useLoad } from '../ui.js';

export function Licences({ me }) {
  const issuer = me.user.roles.includes('supplier_admin');
  const result = useLoad(async () => {
    const [types, seals] = await Promise.all([api('/licences/types'), api('/licences/seals')]);
    let registers = [];
    if (issuer) {
      const datasets = new Set(types.map((type) => `licence_${type.code}`));
      const resources = await all('/catalog/resources');
      registers = resources.filter((r) => r.supplier === me.department.code && datasets.has(r.dataset));
    }
    return { types, seals, registers };
  }, []);
  return html`<section>
    <h1>${t('nav.licences')}</h1>
    <p class="muted">${t('licences.intro')}</p>
    <${Loaded} result=${result}>${({ types, seals, registers }) => html`
      <${Verify} types=${types} />
      ${issuer ? html`<${Lookup} types=${types} registers=${registers} />` : null}
      <${Types} types=${types} />
      <${Seals} me=${me} seals=${seals} issuer=${issuer && registers.length > 0} onChange=${result.reload} />`}<//>
  </section>`;
}

function Types({ types }) {
  const validity = (v) => (v.kind === 'permanent' ? t('licences.permanent') : t('licences.months', { months: v.months }));
  return html`<h2>${t('licences.types')}</h2>
    <${Table} testid="licence-types" rows=${types} columns=${[
      { title: t('licences.code'), render: (type) => html`<code>${type.code}</code>` },
      { title: t('licences.name'), key: 'name' },
      { title: t('licences.issuer_kind'), key: 'issuer_kind' },
      { title: t('licences.holder'), render: (type) => label('holder', type.holder) },
      { title: t('licences.validity'), render: (type) => validity(type.validity) },
      { title: t('licences.items'), render: (type) => type.items.map((item) => html`<span class="chip" title=${item.name}>
        ${item.label}${item.mask !== 'none' ? html` <small class="muted">(${label('mask', item.mask)})</small>` : null}</span>`) },
    ]} />`;
}

// The sealed document inside what a person hands over: the JSON itself, or the readable
// copy (HTML) that carries it in `<script id="sealed-licence">`.
export function sealedFrom(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) return JSON.parse(trimmed);
  // Read as text rather than parsed as a page: the copy is untrusted, and parsing it would
  // bring its markup and styles into the console's document. The gateway writes every `<`
  // inside the embedded JSON as an escape, so the first `</script>` after it is its end.
  const marker = 'id="sealed-licence">';
  const start = trimmed.indexOf(marker);
  const end = start < 0 ? -1 : trimmed.indexOf('</script>', start);
  if (end < 0) throw new Error(t('licences.no_document'));
  return JSON.parse(trimmed.slice(start + marker.length, end));
}

function Verify({ types }) {
  const [text, setText] = useState('');
  const [answer, setAnswer] = useState(null);
  const [shown, setShown] = useState(null);
  const [error, setError] = useState(null);
  const load = async (event) => {
    const file = event.target.files?.[0];
    if (file) setText(await file.text());
    // Cleared, so that choosing the same file again (a second check of the same copy) reads it again.
    event.target.value = '';
  };
  const submit = async (event) => {
    event.preventDefault();
    setAnswer(null);
    setError(null);
    let sealed;
    try {
      sealed = sealedFrom(text);
    } catch (e) {
      setError({ code: 'malformed_document', message: e.message });
      return;
    }
    try {
      setShown(sealed.document ?? null);
      setAnswer(await api('/licences/verify', { method: 'POST', body: { sealed } }));
    } catch (e) {
      setError(e);
    }
  };
  const type = shown && types.find((ty) => ty.code === shown.licence_type);
  return html`<form class="panel" data-testid="verify-form" onSubmit=${submit}>
    <h2>${t('licences.verify')}</h2>
    <p class="muted">${t('licences.verify_help')}</p>
    <${Field} label=${t('licences.file')}><input type="file" name="file" accept=".json,.html,.htm,application/json,text/html" onChange=${load} /><//>
    <${Field} label=${t('licences.document')} wide><textarea name="document" rows="6" value=${text} onInput=${(e) => setText(e.target.value)}></textarea><//>
    <${ErrorBox} error=${error} />
    <button type="submit" class="primary" disabled=${!text.trim()}>${t('licences.check')}</button>
    ${answer ? html`<div class="verdict" data-testid="verdict" data-genuine=${String(answer.genuine)} data-reason=${answer.reason ?? ''}>
      <p>${answer.genuine
        ? html`<${Badge} kind="ok">${t('licences.genuine')}<//>`
        : html`<${Badge} kind="bad">${label('document', answer.reason)}<//>`}
        ${answer.status ? html` · ${t('licences.status')}: <span data-testid="verdict-status">${label('licence_status', answer.status)}</span>` : null}</p>
      ${answer.detail ? html`<p class="muted">${answer.detail}</p>` : null}
      ${answer.altered.length ? html`<p>${t('licences.altered')}: <span data-testid="altered">${answer.altered.map((a) => {
        const name = a.replace(/^surface\./, '');
        return type?.items.find((i) => i.name === name)?.label ?? a;
      }).join('、')}</span></p>` : null}
      ${shown ? html`<dl class="kv">
        <dt>${t('licences.number')}</dt><dd><code>${shown.number}</code></dd>
        <dt>${t('licences.type')}</dt><dd>${type?.name ?? shown.licence_type}</dd>
        <dt>${t('licences.issuer')}</dt><dd>${shown.issuer_name}</dd>
        <dt>${t('licences.issued_on')}</dt><dd>${shown.issued_on}</dd>
      </dl>` : null}
    </div>` : null}
  </form>`;
}

function Lookup({ types, registers }) {
  const [input, setInput] = useState({ resource: registers[0]?.code ?? '', number: '' });
  const [found, setFound] = useState(null);
  const [reason, setReason] = useState('');
  const [error, setError] = useState(null);
  const find = async (event) => {
    event?.preventDefault();
    setError(null);
    try {
      setFound(await api('/licences/lookup', { method: 'POST', body: { resource: input.resource, number: input.number.trim() } }));
    } catch (e) {
      setFound(null);
      setError(e);
    }
  };
  const revoke = async (event) => {
    event.preventDefault();
    if (!window.confirm(t('licences.confirm_revoke', { number: found.number }))) return;
    setError(null);
    try {
      await api('/licences/revoke', { method: 'POST', body: { resource: found.resource, number: found.number, reason } });
      setReason('');
      await find();
    } catch (e) {
      setError(e);
    }
  };
  const type = found && types.find((ty) => ty.code === found.licence_type);
  return html`<div class="panel" data-testid="lookup">
    <form onSubmit=${find}>
      <h2>${t('licences.lookup')}</h2>
      <p class="muted">${t('licences.lookup_help')}</p>
      <div class="grid">
        <${Field} label=${t('licences.registry')}><select name="resource" value=${input.resource} onChange=${(e) => setInput({ ...input, resource: e.target.value })}>
          ${registers.map((r) => html`<option value=${r.code}>${r.name} (${r.code})</option>`)}
        </select><//>
        <${Field} label=${t('licences.number')}><input name="number" required value=${input.number} onInput=${(e) => setInput({ ...input, number: e.target.value })} /><//>
      </div>
      <button type="submit" class="primary" disabled=${!input.resource}>${t('licences.find')}</button>
    </form>
    <${ErrorBox} error=${error} />
    ${found ? html`<div data-testid="issued-licence">
      <dl class="kv">
        <dt>${t('licences.number')}</dt><dd><code>${found.number}</code></dd>
        <dt>${t('licences.type')}</dt><dd>${type?.name ?? found.licence_type}</dd>
        <dt>${t('licences.status')}</dt><dd><${Badge} kind=${found.status === 'valid' ? 'ok' : 'bad'}><span data-testid="licence-status">${label('licence_status', found.status)}</span><//></dd>
        <dt>${t('licences.holder_name')}</dt><dd data-testid="holder-name">${found.holder_name}</dd>
        <dt>${t('licences.holder')}</dt><dd data-testid="holder"><code>${found.holder}</code></dd>
        <dt>${t('licences.issuer')}</dt><dd>${found.issuer_name}</dd>
        <dt>${t('licences.issued_on')}</dt><dd>${found.issued_on}</dd>
        <dt>${t('licences.valid_until')}</dt><dd>${found.valid_until ?? t('licences.permanent')}</dd>
        <dt>${t('licences.verification_code')}</dt><dd><code>${found.verification_code}</code></dd>
        ${(type?.items ?? []).filter((item) => found.surface[item.name] !== undefined).map((item) => html`
          <dt>${item.label}</dt><dd>${found.surface[item.name]}</dd>`)}
        ${found.revocation ? html`<dt>${t('licences.revoked_at')}</dt>
          <dd data-testid="revocation">${formatTime(found.revocation.revoked_at)} · ${found.revocation.reason}</dd>` : null}
      </dl>
      ${found.revocation ? null : html`<form class="row" data-testid="revoke-form" onSubmit=${revoke}>
        <input name="reason" required maxlength="200" placeholder=${t('licences.revoke_reason')} value=${reason} onInput=${(e) => setReason(e.target.value)} />
        <button type="submit" class="danger">${t('licences.revoke')}</button>
      </form>`}
    </div>` : null}
  </div>`;
}

function Seals({ me, seals, issuer, onChange }) {
  const [pem, setPem] = useState('');
  const [error, setError] = useState(null);
  const act = async (work) => {
    setError(null);
    try {
      await work();
      onChange();
    } catch (e) {
      setError(e);
    }
  };
  const register = (event) => {
    event.preventDefault();
    act(async () => {
      await api('/licences/seals', { method: 'POST', body: { certificate: pem } });
      setPem('');
    });
  };
  const retire = (seal) => act(async () => {
    if (!window.confirm(t('licences.confirm_retire', { fingerprint: seal.fingerprint.slice(0, 16) }))) return;
    await api(`/licences/seals/${encodeURIComponent(seal.fingerprint)}`, { method: 'DELETE' });
  });
  const own = (seal) => seal.department_code === me.department.code;
  return html`<h2>${t('licences.seals')}</h2>
    <${Table} testid="seals" rows=${seals} columns=${[
      { title: t('licences.department'), render: (s) => html`<code>${s.department_code}</code>` },
      { title: t('licences.subject'), key: 'subject' },
      { title: t('licences.fingerprint'), render: (s) => html`<code title=${s.fingerprint}>${s.fingerprint.slice(0, 16)}…</code>` },
      { title: t('licences.source'), render: (s) => label('seal_source', s.source) },
      { title: t('licences.not_after'), render: (s) => formatTime(s.not_after) },
      { title: t('licences.in_force'), render: (s) => html`<${Badge} kind=${s.in_force ? 'ok' : 'bad'}>${t(s.in_force ? 'licences.yes' : 'licences.no')}<//>` },
      { title: '', render: (s) => (issuer && own(s) && s.source === 'registered' && !s.registration?.retired_at
        ? html`<button type="button" data-action="retire" data-fingerprint=${s.fingerprint} onClick=${() => retire(s)}>${t('licences.retire')}</button>`
        : null) },
    ]} />
    <${ErrorBox} error=${error} />
    ${issuer ? html`<form class="panel" data-testid="seal-form" onSubmit=${register}>
      <h2>${t('licences.register_seal')}</h2>
      <p class="muted">${t('licences.register_help')}</p>
      <${Field} label=${t('licences.certificate')} wide><textarea name="certificate" rows="6" required value=${pem} onInput=${(e) => setPem(e.target.value)}></textarea><//>
      <button type="submit" class="primary">${t('licences.register')}</button>
    </form>` : null}`;
}
