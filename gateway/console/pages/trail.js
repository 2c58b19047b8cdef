// The trail of management actions (platform administrators): who made, changed or stopped
// which department, system or account, and when, newest first. Details are shown as the API
// gives them: key prefixes and certificate digests, never a secret.

import { html } from '../vendor/htm-preact.js';
import { all } from '../api.js';
import { departmentNames } from './catalog.js';
import { label, t } from '../i18n.js';
import { Loaded, Table, formatTime, useLoad } from '../ui.js';

// A detail as people read it: each field's name in the console's language, roles by their
// names and a department by its name.
function details(action, detail, departments) {
  // A department's roles are what it does in sharing; a person's, what they may do.
  const roleGroup = action.startsWith('department.') ? 'department_role' : 'role';
  const shown = (name, value) => {
    if (name === 'roles' && Array.isArray(value)) return value.map((r) => label(roleGroup, r)).join('、');
    if (name === 'department') return departments[value] ?? value;
    return Array.isArray(value) ? value.join(', ') : String(value);
  };
  return Object.entries(detail ?? {})
    .map(([name, value]) => `${label('trail.field', name)}: ${shown(name, value)}`)
    .join('; ');
}

export function Trail() {
  const result = useLoad(async () => {
    const [actions, departments] = await Promise.all([all('/admin-actions'), departmentNames()]);
    return { actions, departments };
  }, []);
  return html`<section>
    <h1>${t('nav.trail')}</h1>
    <p class="muted">${t('trail.intro')}</p>
    <${Loaded} result=${result}>${({ actions, departments }) => html`<${Table} testid="trail" rows=${[...actions].reverse()}
      columns=${[
        { title: t('trail.at'), render: (a) => formatTime(a.at) },
        { title: t('trail.actor'), key: 'actor' },
        { title: t('trail.action'), render: (a) => html`<span data-action=${a.action}>${label('trail.action', a.action)}</span>` },
        { title: t('trail.target'), render: (a) => html`<code>${a.target}</code>` },
        { title: t('trail.detail'), render: (a) => details(a.action, a.detail, departments) },
      ]} />`}<//>
  </section>`;
}
