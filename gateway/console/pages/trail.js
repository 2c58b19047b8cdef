// The trail of management actions (platform administrators): who made, changed or stopped
// which department, system or account, and when, newest first. Details are shown as the API
// gives them: key prefixes and certificate digests, never a secret.

import { html } from '../vendor/htm-preact.js';
import { all } from '../api.js';
import { label, t } from '../i18n.js';
import { Loaded, Table, formatTime, useLoad } from '../ui.js';

function details(detail) {
  return Object.entries(detail ?? {})
    .map(([name, value]) => `${name}: ${Array.isArray(value) ? value.join(', ') : value}`)
    .join('; ');
}

export function Trail() {
  const result = useLoad(() => all('/admin-actions'), []);
  return html`<section>
    <h1>${t('nav.trail')}</h1>
    <p class="muted">${t('trail.intro')}</p>
    <${Loaded} result=${result}>${(actions) => html`<${Table} testid="trail" rows=${[...actions].reverse()}
      columns=${[
        { title: t('trail.at'), render: (a) => formatTime(a.at) },
        { title: t('trail.actor'), key: 'actor' },
        { title: t('trail.action'), render: (a) => html`<span data-action=${a.action}>${label('trail.action', a.action)}</span>` },
        { title: t('trail.target'), render: (a) => html`<code>${a.target}</code>` },
        { title: t('trail.detail'), render: (a) => details(a.detail) },
      ]} />`}<//>
  </section>`;
}
