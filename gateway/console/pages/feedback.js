// Objections (纠错) and ratings (好差评): consuming departments file them, suppliers answer
// them within their working-day deadlines, and reviewers and operators watch them.

import { html, useState } from '../vendor/htm-preact.js';
import { all, api } from '../api.js';
import { label, t } from '../i18n.js';
import { Badge, ErrorBox, Field, Loaded, Table, formatTime, useLoad } from '../ui.js';

const TAGS = ['slow', 'wrong_data', 'incomplete', 'stale', 'unavailable', 'other'];

function Due({ deadline, overdue }) {
  return html`<span class=${overdue ? 'overdue' : ''}>${deadline}${overdue ? html` <${Badge} kind="bad">${t('feedback.overdue')}<//>` : null}</span>`;
}

export function Feedback({ me }) {
  const result = useLoad(async () => {
    const [objections, ratings] = await Promise.all([all('/objections'), all('/ratings')]);
    const grants = me.user.roles.includes('demander') ? await all('/grants').catch(() => []) : [];
    return { objections, ratings, grants };
  }, []);
  const roles = me.user.roles;
  const mine = (code) => code === me.department.code;
  return html`<section>
    <h1>${t('nav.feedback')}</h1>
    <${Loaded} result=${result}>${({ objections, ratings, grants }) => html`
      ${roles.includes('demander') ? html`<div class="panels">
        <${ObjectionForm} onDone=${result.reload} />
        <${RatingForm} grants=${grants.filter((g) => mine(g.grant.consumer_department))} onDone=${result.reload} />
      </div>` : null}
      <h2>${t('feedback.objections')}</h2>
      <${Table} testid="objections" rows=${objections} columns=${[
        { title: t('feedback.filed_at'), render: (o) => formatTime(o.filed_at) },
        { title: t('demands.resource'), render: (o) => html`<code>${o.resource}</code>` },
        { title: t('feedback.item'), render: (o) => html`<code>${o.item}</code>` },
        { title: t('feedback.description'), key: 'description' },
        { title: t('demands.state'), render: (o) => html`<span data-testid="objection-state">${label('objection', o.state)}</span>` },
        { title: t('demands.deadline'), render: (o) => html`<${Due} deadline=${o.deadline} overdue=${o.overdue} />` },
        { title: t('feedback.answer'), render: (o) => (o.state === 'open' && roles.includes('supplier_admin') && mine(o.supplier)
          ? html`<${AnswerObjection} objection=${o} onDone=${result.reload} />`
          : o.answer ?? '') },
      ]} />
      <h2>${t('feedback.ratings')}</h2>
      <${Table} testid="ratings" rows=${ratings} columns=${[
        { title: t('feedback.period'), key: 'period' },
        { title: t('demands.resource'), render: (r) => html`<code>${r.resource}</code>` },
        { title: t('feedback.score'), render: (r) => html`<${Badge} kind=${r.score <= 2 ? 'bad' : 'ok'}>${r.score}<//>`, className: 'num' },
        { title: t('feedback.tags'), render: (r) => r.tags.map((tag) => label('tag', tag)).join('、') },
        { title: t('feedback.comment'), key: 'comment' },
        { title: t('feedback.rectification'), render: (r) => {
          const task = r.rectification;
          if (!task) return '—';
          if (task.answer) return task.answer;
          if (roles.includes('supplier_admin') && mine(r.supplier)) return html`<${Rectify} rating=${r} onDone=${result.reload} />`;
          return html`<${Due} deadline=${task.deadline} overdue=${r.overdue} />`;
        } },
      ]} />`}<//>
  </section>`;
}

function ObjectionForm({ onDone }) {
  const [input, setInput] = useState({ exchange_id: '', item: '', description: '' });
  const [error, setError] = useState(null);
  const set = (key) => (e) => setInput({ ...input, [key]: e.target.value.trim() === '' ? '' : e.target.value });
  const submit = async (event) => {
    event.preventDefault();
    try {
      await api('/objections', { method: 'POST', body: input });
      setError(null);
      setInput({ exchange_id: '', item: '', description: '' });
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<form class="panel" data-testid="objection-form" onSubmit=${submit}>
    <h2>${t('feedback.file_objection')}</h2>
    <p class="muted">${t('feedback.objection_help')}</p>
    <${Field} label=${t('feedback.exchange_id')}><input name="exchange_id" required value=${input.exchange_id} onInput=${set('exchange_id')} /><//>
    <${Field} label=${t('feedback.item')}><input name="item" required value=${input.item} onInput=${set('item')} /><//>
    <${Field} label=${t('feedback.description')}><textarea name="description" required value=${input.description} onInput=${set('description')}></textarea><//>
    <${ErrorBox} error=${error} />
    <button type="submit" class="primary">${t('feedback.file')}</button>
  </form>`;
}

function RatingForm({ grants, onDone }) {
  const [input, setInput] = useState({ grant_id: grants[0]?.grant.id ?? '', score: 5, tags: [], comment: '' });
  const [error, setError] = useState(null);
  const toggle = (tag) => setInput({ ...input, tags: input.tags.includes(tag) ? input.tags.filter((x) => x !== tag) : [...input.tags, tag] });
  const submit = async (event) => {
    event.preventDefault();
    try {
      await api('/ratings', { method: 'POST', body: { ...input, score: Number(input.score) } });
      setError(null);
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<form class="panel" data-testid="rating-form" onSubmit=${submit}>
    <h2>${t('feedback.rate')}</h2>
    <${Field} label=${t('nav.grants')}><select name="grant_id" value=${input.grant_id} onChange=${(e) => setInput({ ...input, grant_id: e.target.value })}>
      ${grants.map((g) => html`<option value=${g.grant.id}>${g.grant.resource_code} · ${g.grant.service_item} · ${g.grant.id.slice(-8)}</option>`)}
    </select><//>
    <${Field} label=${t('feedback.score')}><select name="score" value=${input.score} onChange=${(e) => setInput({ ...input, score: e.target.value })}>
      ${[5, 4, 3, 2, 1].map((s) => html`<option value=${s}>${s}</option>`)}
    </select><//>
    <fieldset><legend>${t('feedback.tags')}</legend><div class="checks">${TAGS.map((tag) => html`<label class="check">
      <input type="checkbox" name=${`tag-${tag}`} checked=${input.tags.includes(tag)} onChange=${() => toggle(tag)} /> ${label('tag', tag)}</label>`)}</div></fieldset>
    <${Field} label=${t('feedback.comment')}><textarea name="comment" value=${input.comment} onInput=${(e) => setInput({ ...input, comment: e.target.value })}></textarea><//>
    <${ErrorBox} error=${error} />
    <button type="submit" class="primary" disabled=${!input.grant_id}>${t('feedback.submit_rating')}</button>
  </form>`;
}

function AnswerObjection({ objection, onDone }) {
  const [outcome, setOutcome] = useState('corrected');
  const [text, setText] = useState('');
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const body = outcome === 'rejected' ? { outcome, reason: text } : { outcome, note: text };
    try {
      await api(`/objections/${encodeURIComponent(objection.id)}/answer`, { method: 'POST', body });
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<form class="inline" data-testid="answer-objection" onSubmit=${submit}>
    <select name="outcome" value=${outcome} onChange=${(e) => setOutcome(e.target.value)}>
      ${['corrected', 'confirmed_correct', 'rejected'].map((o) => html`<option value=${o}>${label('objection', o)}</option>`)}
    </select>
    <input name="answer" required placeholder=${t('feedback.answer')} value=${text} onInput=${(e) => setText(e.target.value)} />
    <button type="submit">${t('feedback.send')}</button>
    <${ErrorBox} error=${error} />
  </form>`;
}

function Rectify({ rating, onDone }) {
  const [text, setText] = useState('');
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    try {
      await api(`/ratings/${encodeURIComponent(rating.id)}/rectification`, { method: 'POST', body: { answer: text } });
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<form class="inline" data-testid="rectify" onSubmit=${submit}>
    <input name="rectification" required placeholder=${t('feedback.rectification')} value=${text} onInput=${(e) => setText(e.target.value)} />
    <button type="submit">${t('feedback.send')}</button>
    <${ErrorBox} error=${error} />
  </form>`;
}
