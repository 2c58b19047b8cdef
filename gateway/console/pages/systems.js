// Calling systems: a department's own (every system for platform administrators), with the
// two things done when a key may have leaked or a system is retired: a new key, shown once,
// and stopping or allowing the system's calls.

import { html, useState } from '../vendor/htm-preact.js';
import { all, api } from '../api.js';
import { t } from '../i18n.js';
import { Badge, ErrorBox, Loaded, Table, formatTime, useLoad } from '../ui.js';

export function Systems() {
  const result = useLoad(() => all('/systems'), []);
  const [issued, setIssued] = useState(null);
  const [error, setError] = useState(null);
  const act = async (work) => {
    setError(null);
    setIssued(null);
    try {
      await work();
      result.reload();
    } catch (e) {
      setError(e);
    }
  };
  const newKey = (system) =>
    act(async () => {
      if (!window.confirm(t('systems.confirm_key', { name: system.name }))) return;
      const answer = await api(`/systems/${encodeURIComponent(system.id)}/api-key`, { method: 'POST' });
      setIssued({ name: system.name, key: answer.api_key });
    });
  const setEnabled = (system, enabled) =>
    act(() => api(`/systems/${encodeURIComponent(system.id)}/enabled`, { method: 'PUT', body: { enabled } }));
  return html`<section>
    <h1>${t('nav.systems')}</h1>
    <p class="muted">${t('systems.intro')}</p>
    ${issued
      ? html`<div class="notice" role="status" data-testid="new-key">
          ${t('systems.new_key', { name: issued.name })} <code data-testid="api-key">${issued.key}</code></div>`
      : null}
    <${ErrorBox} error=${error} />
    <${Loaded} result=${result}>${(systems) => html`<${Table} testid="systems" rows=${systems}
      columns=${[
        { title: t('systems.name'), key: 'name' },
        { title: t('systems.key'), render: (s) => html`<code>${s.api_key_prefix}…</code>` },
        { title: t('systems.created'), render: (s) => formatTime(s.created_at) },
        {
          title: t('systems.state'),
          render: (s) => html`<${Badge} kind=${s.enabled ? 'ok' : 'bad'}>${t(s.enabled ? 'systems.enabled' : 'systems.stopped')}<//>`,
        },
        {
          title: '',
          render: (s) => html`<span class="row" data-system=${s.name}>
            <button type="button" data-action="new-key" onClick=${() => newKey(s)}>${t('systems.rotate')}</button>
            <button type="button" data-action=${s.enabled ? 'stop' : 'allow'} onClick=${() => setEnabled(s, !s.enabled)}>
              ${t(s.enabled ? 'systems.stop' : 'systems.allow')}</button></span>`,
        },
      ]} />`}<//>
  </section>`;
}
