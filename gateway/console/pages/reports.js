// The monthly report (跨省通办数据共享月度汇总表): the month's tables on screen, and the
// workbook and CSV tables to download.

import { html, useState } from '../vendor/htm-preact.js';
import { api, download } from '../api.js';
import { label, t } from '../i18n.js';
import { ErrorBox, Loaded, Table, useLoad } from '../ui.js';

// This month in Beijing time, as YYYY-MM.
export function currentMonth() {
  return new Date(Date.now() + 8 * 3600 * 1000).toISOString().slice(0, 7);
}

const num = (v) => (v === null || v === undefined ? '—' : v);
const reasons = (r) => Object.entries(r.refusals_by_reason).map(([k, n]) => `${label('code', k)} ${n}`).join('；');

function rowColumns() {
  return [
    { title: t('report.code'), render: (r) => html`<code>${r.code}</code>` },
    { title: t('report.name'), key: 'name' },
    { title: t('dash.calls'), key: 'calls', className: 'num' },
    { title: t('dash.refused'), key: 'refused', className: 'num' },
    { title: t('report.reasons'), render: reasons },
    { title: 'p95 ms', render: (r) => num(r.p95_ms), className: 'num' },
    { title: t('feedback.objections'), key: 'objections', className: 'num' },
    { title: t('feedback.ratings'), key: 'ratings', className: 'num' },
    { title: t('report.mean_score'), render: (r) => num(r.mean_score), className: 'num' },
    { title: t('report.overdue_demands'), key: 'overdue_demands', className: 'num' },
  ];
}

export function resourceColumns() {
  return [
    { title: t('catalog.code'), render: (r) => html`<code>${r.code}</code>` },
    { title: t('catalog.name'), key: 'name' },
    { title: t('dash.calls'), key: 'calls', className: 'num' },
    { title: t('feedback.objections'), key: 'objections', className: 'num' },
    { title: t('report.open'), key: 'open', className: 'num' },
    { title: t('feedback.overdue'), key: 'overdue', className: 'num' },
    { title: t('report.resolution'), render: (r) => num(r.mean_resolution_days), className: 'num' },
    { title: t('feedback.ratings'), key: 'ratings', className: 'num' },
    { title: t('report.mean_score'), render: (r) => num(r.mean_score), className: 'num' },
    { title: t('report.poor'), key: 'poor_ratings', className: 'num' },
  ];
}

export function Reports() {
  const [month, setMonth] = useState(currentMonth());
  const [error, setError] = useState(null);
  const report = useLoad(() => api('/reports/monthly', { query: { month } }), [month]);
  const fetchFile = (format, table) => {
    const name = format === 'xlsx' ? `tongban-report-${month}.xlsx` : `tongban-report-${month}-${table}.csv`;
    download('/reports/monthly', { month, format, table }, name).then(() => setError(null), setError);
  };
  return html`<section>
    <div class="heading">
      <h1>${t('nav.reports')}</h1>
      <div class="row">
        <input type="month" name="month" value=${month} onChange=${(e) => e.target.value && setMonth(e.target.value)} aria-label=${t('report.month')} />
        <button type="button" data-testid="download-xlsx" onClick=${() => fetchFile('xlsx')}>${t('report.xlsx')}</button>
        <button type="button" data-testid="download-csv" onClick=${() => fetchFile('csv', 'service_items')}>${t('report.csv')}</button>
      </div>
    </div>
    <${ErrorBox} error=${error} />
    <${Loaded} result=${report}>${(r) => html`
      <h2>${t('report.by_item')}</h2>
      <${Table} testid="report-items" rows=${r.service_items.map((x) => ({ id: x.code, ...x }))} columns=${rowColumns()} />
      <h2>${t('report.by_department')}</h2>
      <${Table} testid="report-departments" rows=${r.departments.map((x) => ({ id: x.code, ...x }))} columns=${rowColumns()} />
      <h2>${t('report.by_resource')}</h2>
      <${Table} testid="report-resources" rows=${r.resources.map((x) => ({ id: x.code, ...x }))} columns=${resourceColumns()} />`}<//>
  </section>`;
}
