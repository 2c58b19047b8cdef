// Federation: this gateway's peers in other provinces and how exchanges with each stand
// (reachable, the age of its catalog copy, the outbox of hand-offs), their resources, the
// demands in flight between the two gateways, and the grants peers compiled for this
// gateway's departments.

import { html } from '../vendor/htm-preact.js';
import { all, api } from '../api.js';
import { label, t } from '../i18n.js';
import { Badge, Loaded, StateBadge, Table, formatTime, navigate, useLoad } from '../ui.js';

const FINAL = ['approved', 'refused_at_conformity', 'finally_refused', 'withdrawn'];
// Whose turn a demand that crosses gateways is, by state: the applicant's and the home
// office's steps are taken at home, the supplier's answer and a dispute's decision there.
const SUPPLIER_TURN = ['supplier_review', 'disputed'];

function age(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

export function Federation({ me }) {
  const roles = me.user.roles;
  const result = useLoad(async () => {
    const [federation, remote, demands, mirrors] = await Promise.all([
      api('/federation/peers'),
      all('/catalog/remote-resources'),
      all('/demands').catch(() => []),
      api('/federation/grant-mirrors').catch(() => []),
    ]);
    return { federation, remote, demands: demands.filter((d) => d.peer && !FINAL.includes(d.state)), mirrors };
  }, []);
  return html`<section>
    <${Loaded} result=${result}>${({ federation, remote, demands, mirrors }) => html`
      <div class="heading">
        <h1>${t('nav.federation')}</h1>
        <span class="muted" data-testid="gateway">${federation.name
          ? `${federation.name} · ${federation.region}`
          : t('federation.none')}</span>
      </div>
      <h2>${t('federation.health')}</h2>
      <${Table} testid="peers" rows=${federation.peers.map((p) => ({ id: p.name, ...p }))} empty=${t('federation.none')}
        columns=${[
          { title: t('federation.peer'), render: (p) => html`<strong>${p.name}</strong> <span class="muted">${p.region_name}</span>` },
          { title: t('federation.reachable'), render: (p) => html`<${Badge} kind=${p.reachable ? 'ok' : 'bad'}>${t(p.reachable ? 'federation.up' : 'federation.down')}<//>` },
          { title: t('federation.resources'), key: 'resources', className: 'num' },
          { title: t('federation.catalog_age'), render: (p) => age(p.catalog.age_seconds), className: 'num' },
          { title: t('federation.pending'), render: (p) => html`<span data-testid=${`pending-${p.name}`}>${p.outbox.pending}</span>`, className: 'num' },
          { title: t('federation.delivered'), render: (p) => p.outbox.delivered, className: 'num' },
          { title: t('federation.refused'), render: (p) => p.outbox.refused, className: 'num' },
          { title: t('federation.problem'), render: (p) => html`<span class="muted" title=${p.outbox.last_error ?? p.failure ?? ''}>${(p.outbox.last_error ?? p.failure ?? '').slice(0, 80)}</span>` },
        ]} />
      <h2>${t('federation.remote_resources')}</h2>
      <${Table} testid="remote-resources" rows=${remote}
        onRow=${roles.includes('demander') ? (r) => navigate(`#/demands/new?resource=${encodeURIComponent(r.id)}`) : undefined}
        columns=${[
          { title: t('demands.resource'), render: (r) => html`${r.resource.name} <code>${r.id}</code>` },
          { title: t('federation.province'), render: (r) => r.region_name },
          { title: t('federation.peer'), key: 'peer' },
          { title: t('catalog.share_type'), render: (r) => label('share_type', r.resource.share_type) },
          { title: t('federation.catalog_age'), render: (r) => age(r.catalog.age_seconds), className: 'num' },
        ]} />
      <h2>${t('federation.in_flight')}</h2>
      <${Table} testid="demands-in-flight" rows=${demands} onRow=${(d) => navigate(`#/demands/${d.id}`)}
        columns=${[
          { title: t('demands.resource'), render: (d) => html`<code>${d.resource_code}</code>` },
          { title: t('demands.state'), render: (d) => html`<${StateBadge} state=${d.state} />` },
          { title: t('federation.peer'), key: 'peer' },
          { title: t('federation.turn'), render: (d) => {
            const supplierTurn = SUPPLIER_TURN.includes(d.state);
            const here = (d.side === 'supplier') === supplierTurn;
            return html`<span data-testid="turn">${here ? t('federation.turn_here') : t('federation.turn_peer')}</span>`;
          } },
          { title: t('federation.deadline'), render: (d) => d.clock?.deadline ?? '—' },
        ]} />
      ${mirrors.length || roles.includes('demander') ? html`
        <h2>${t('federation.mirrors')}</h2>
        <p class="muted">${t('federation.mirrors_note')}</p>
        <${Table} testid="grant-mirrors" rows=${mirrors.map((m) => ({ id: m.grant.id, ...m }))}
          columns=${[
            { title: t('grants.id'), render: (m) => html`<code title=${m.grant.id}>${m.grant.id.slice(-8)}</code>` },
            { title: t('demands.resource'), render: (m) => html`<code>${m.resource_id}</code>` },
            { title: t('federation.peer'), key: 'peer' },
            { title: t('demands.service_item'), render: (m) => m.grant.service_item },
            { title: t('grants.effective'), render: (m) => html`<span data-testid="mirror-status">${label('effective', m.grant.status)}</span>` },
            { title: t('federation.received'), render: (m) => formatTime(m.received_at) },
          ]} />` : null}
    `}<//>
  </section>`;
}
