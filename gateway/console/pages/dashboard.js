// The operators' dashboard: exchange volume and outcomes over time, latency percentiles,
// cache hit rate, refusals by reason, top callers and resources, data quality, overdue
// reviews and the log chain's state. Every figure comes from the exchange-log and quality
// APIs, and the page refreshes itself.

import { html, useEffect, useRef, useState } from '../vendor/htm-preact.js';
import { all, api } from '../api.js';
import { currentMonth, resourceColumns } from './reports.js';
import { label, t } from '../i18n.js';
import { Badge, ErrorBox, Loaded, Table, navigate, percent, useLoad } from '../ui.js';

const REFRESH_SECONDS = 10;

const PERIODS = {
  hour: { hours: 1, bucket: 'minute', step: 60 },
  day: { hours: 24, bucket: 'hour', step: 3600 },
  week: { hours: 24 * 7, bucket: 'day', step: 86400 },
};

const COLORS = { calls: '#1f5fbf', succeeded: '#2e8540', refused: '#c9302c', rate_limited: '#e08e0b', failed: '#6f42c1', p50: '#2e8540', p95: '#e08e0b', p99: '#c9302c' };

function seconds(bucket) {
  const text = /[zZ]|[+-]\d\d:?\d\d$/.test(bucket) ? bucket : `${bucket}Z`;
  return Math.floor(Date.parse(text) / 1000);
}

// Columns for uPlot: every bucket of the period, so a quiet minute shows as zero calls
// rather than a line drawn across it, and latency is left blank where nothing was called.
function series(rows, period, from) {
  const { step } = PERIODS[period];
  const first = Math.floor(from / 1000 / step) * step;
  const last = Math.floor(Date.now() / 1000 / step) * step;
  const byBucket = new Map(rows.map((r) => [seconds(r.bucket), r]));
  const xs = [];
  for (let x = first; x <= last; x += step) xs.push(x);
  const column = (key, missing) => xs.map((x) => byBucket.get(x)?.[key] ?? missing);
  return {
    volume: [xs, column('calls', 0), column('succeeded', 0), column('refused', 0), column('rate_limited', 0), column('failed', 0)],
    latency: [xs, column('p50_ms', null), column('p95_ms', null), column('p99_ms', null)],
  };
}

function Chart({ testid, lines, data }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const element = box.current;
    const options = {
      width: element.clientWidth || 480,
      height: 220,
      series: [{}, ...lines.map((l) => ({ label: l.label, stroke: l.color, width: 2, spanGaps: false, points: { show: true, size: 4 } }))],
      axes: [{}, { size: 56 }],
      // Twenty-four-hour clock and ISO dates, as both languages' readers expect here.
      fmtDate: (template) => window.uPlot.fmtDate(template.replace('{h}', '{HH}').replace('{aa}', '').replace('{M}/{D}/{YY}', '{YYYY}-{MM}-{DD}').replace('{M}/{D}', '{MM}-{DD}')),
      legend: { live: false },
    };
    plot.current = new window.uPlot(options, data, element);
    const resize = new ResizeObserver(() => plot.current.setSize({ width: element.clientWidth, height: 220 }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.current.destroy();
    };
  }, []);
  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);
  return html`<div class="chart" data-testid=${testid} ref=${box}></div>`;
}

function Tile({ title, value, testid, kind }) {
  return html`<div class=${`tile ${kind ?? ''}`} data-testid=${testid}><div class="tile-value">${value}</div><div class="tile-title">${title}</div></div>`;
}

// Bars of `rows[].calls`, against `scale` or else the largest value.
function Bars({ rows, keyName, testid, show = (value) => value, scale }) {
  if (!rows.length) return html`<p class="muted">${t('common.none')}</p>`;
  const max = scale ?? Math.max(...rows.map((r) => r.calls));
  return html`<ul class="bars" data-testid=${testid}>${rows.map((r) => html`<li data-key=${r[keyName] ?? ''}>
    <span class="bar-label" title=${r[keyName] ?? ''}>${r[keyName] === null || r[keyName] === undefined ? '—' : show(r[keyName])}</span>
    <span class="bar"><span style=${{ width: `${(100 * r.calls) / max}%` }}></span></span>
    <span class="num">${r.calls}</span>
  </li>`)}</ul>`;
}

async function loadFigures(period) {
  const { hours, bucket } = PERIODS[period];
  const from = Date.now() - hours * 3600 * 1000;
  const window = { from: new Date(from).toISOString() };
  const [buckets, totals, items, pairs, refusals, callers, resources, quality, systems] = await Promise.all([
    api('/exchanges/stats', { query: { ...window, bucket } }),
    api('/exchanges/stats', { query: { ...window, bucket: 'all' } }),
    api('/exchanges/stats', { query: { ...window, bucket: 'all', by: 'service_item' } }),
    api('/exchanges/stats', { query: { ...window, bucket: 'all', by: 'province_pair' } }),
    api('/exchanges/refusals', { query: window }),
    api('/exchanges/top-callers', { query: { ...window, limit: 10 } }),
    api('/exchanges/top-resources', { query: { ...window, limit: 10 } }),
    api('/quality'),
    all('/systems').catch(() => []),
  ]);
  // This month's objections and ratings per resource, from the monthly report.
  const report = await api('/reports/monthly', { query: { month: currentMonth() } });
  const systemNames = Object.fromEntries(systems.map((s) => [s.id, s.name]));
  const byCalls = (rows) => [...rows].sort((a, b) => b.calls - a.calls);
  return { systemNames, from, buckets: buckets.rows, total: totals.rows[0] ?? null, items: byCalls(items.rows), pairs: byCalls(pairs.rows), refusals, callers: callers.rows, resources: resources.rows, quality, feedback: report.resources, at: new Date() };
}

export function Dashboard() {
  const [period, setPeriod] = useState('hour');
  const figures = useLoad(() => loadFigures(period), [period]);
  useEffect(() => {
    const timer = setInterval(figures.reload, REFRESH_SECONDS * 1000);
    return () => clearInterval(timer);
  }, [figures.reload]);
  return html`<section class="dashboard">
    <div class="heading">
      <h1>${t('nav.dashboard')}</h1>
      <div class="row">
        <select name="period" value=${period} onChange=${(e) => setPeriod(e.target.value)} aria-label=${t('dash.period')}>
          ${Object.keys(PERIODS).map((p) => html`<option value=${p}>${t(`dash.${p}`)}</option>`)}
        </select>
        <span class="muted" data-testid="updated">${figures.data ? t('common.updated', { time: figures.data.at.toLocaleTimeString(document.documentElement.lang, { hour12: false }) }) : ''}
          · ${t('dash.auto', { seconds: REFRESH_SECONDS })}</span>
      </div>
    </div>
    <${Loaded} result=${figures}>${(f) => html`<${Figures} figures=${f} period=${period} />`}<//>
    <${ChainStatus} />
  </section>`;
}

function Figures({ figures: f, period }) {
  // Sums over no calls at all come back empty; they are zero calls, not unknown.
  const counts = ['calls', 'succeeded', 'refused', 'rate_limited', 'failed', 'cache_hits', 'cache_lookups'];
  const total = { ...f.total, ...Object.fromEntries(counts.map((k) => [k, f.total?.[k] ?? 0])) };
  const ms = (v) => (v === null || v === undefined ? '—' : Number(v).toFixed(1));
  const columns = series(f.buckets, period, f.from);
  const q = f.quality;
  const overdue = q.demands.filter((d) => d.overdue);
  return html`
    <div class="tiles">
      <${Tile} testid="tile-calls" title=${t('dash.calls')} value=${total.calls} />
      <${Tile} testid="tile-success" title=${t('dash.success_rate')} value=${percent(total.succeeded, total.calls)} />
      <${Tile} testid="tile-p50" title="p50 ms" value=${ms(total.p50_ms)} />
      <${Tile} testid="tile-p95" title="p95 ms" value=${ms(total.p95_ms)} />
      <${Tile} testid="tile-p99" title="p99 ms" value=${ms(total.p99_ms)} />
      <${Tile} testid="tile-cache" title=${t('dash.cache_hit_rate')} value=${percent(total.cache_hits, total.cache_lookups)} />
      <${Tile} testid="tile-refused" title=${t('dash.refused')} value=${total.refused} kind=${total.refused ? 'bad' : ''} />
      <${Tile} testid="tile-limited" title=${t('dash.rate_limited')} value=${total.rate_limited} kind=${total.rate_limited ? 'warn' : ''} />
    </div>
    <div class="panels">
      <div class="panel"><h2>${t('dash.volume')}</h2>
        <${Chart} testid="chart-volume" data=${columns.volume} lines=${[
          { label: t('dash.calls'), color: COLORS.calls },
          { label: t('dash.succeeded'), color: COLORS.succeeded },
          { label: t('dash.refused'), color: COLORS.refused },
          { label: t('dash.rate_limited'), color: COLORS.rate_limited },
          { label: t('dash.failed'), color: COLORS.failed },
        ]} /></div>
      <div class="panel"><h2>${t('dash.latency')}</h2>
        <${Chart} testid="chart-latency" data=${columns.latency} lines=${[
          { label: 'p50', color: COLORS.p50 },
          { label: 'p95', color: COLORS.p95 },
          { label: 'p99', color: COLORS.p99 },
        ]} /></div>
      <div class="panel"><h2>${t('dash.refusals')}</h2>
        <${Bars} testid="refusal-reasons" rows=${f.refusals.by_reason} keyName="reason" show=${(reason) => label('code', reason)} />
        <h3>${t('dash.codes')}</h3>
        <${Bars} testid="refusal-codes" rows=${f.refusals.by_code.map((r) => ({ ...r, shown: `${r.status} ${r.code ? label('code', r.code) : ''}` }))} keyName="shown" /></div>
      <div class="panel"><h2>${t('dash.top_callers')}</h2>
        <${Table} testid="top-callers" rows=${f.callers} columns=${[
          { title: t('log.system'), render: (r) => html`<a href=${`#/exchanges?system=${encodeURIComponent(r.system)}`} title=${r.system}>${f.systemNames[r.system] ?? r.system}</a>` },
          { title: t('log.department'), render: (r) => html`<code>${r.department ?? ''}</code>` },
          { title: t('dash.calls'), key: 'calls', className: 'num' },
          { title: t('dash.refused'), key: 'refused_or_failed', className: 'num' },
          { title: 'p95 ms', render: (r) => ms(r.p95_ms), className: 'num' },
        ]} /></div>
      <div class="panel"><h2>${t('dash.top_resources')}</h2>
        <${Table} testid="top-resources" rows=${f.resources} columns=${[
          { title: t('log.resource'), render: (r) => html`<a href=${`#/exchanges?resource=${encodeURIComponent(r.resource)}`}><code>${r.resource}</code></a>` },
          { title: t('dash.calls'), key: 'calls', className: 'num' },
          { title: t('dash.refused'), key: 'refused_or_failed', className: 'num' },
          { title: 'p95 ms', render: (r) => ms(r.p95_ms), className: 'num' },
        ]} /></div>
      <div class="panel"><h2>${t('dash.service_items')}</h2>
        <${Bars} testid="service-items" rows=${f.items} keyName="service_item" /></div>
      <div class="panel"><h2>${t('dash.province_pairs')}</h2>
        <${Table} testid="province-pairs" rows=${f.pairs.map((r) => ({ id: `${r.consumer_province}-${r.supplier_province}`, ...r }))} columns=${[
          { title: t('dash.consumer_province'), render: (r) => r.consumer_province_name ?? r.consumer_province ?? '—' },
          { title: t('dash.supplier_province'), render: (r) => r.supplier_province_name ?? r.supplier_province ?? '—' },
          { title: t('dash.calls'), key: 'calls', className: 'num' },
          { title: t('dash.refused'), key: 'refused', className: 'num' },
          { title: 'p95 ms', render: (r) => ms(r.p95_ms), className: 'num' },
        ]} /></div>
      <div class="panel"><h2>${t('dash.outside')}</h2>
        <div class="tiles small">
          <${Tile} testid="tile-outside-grant" title=${t('dash.outside_grant')} value=${q.calls.outside_grant} kind=${q.calls.outside_grant ? 'bad' : ''} />
          <${Tile} testid="tile-outside-validity" title=${t('dash.outside_validity')} value=${q.calls.outside_validity} kind=${q.calls.outside_validity ? 'bad' : ''} />
        </div>
        <h3>${t('dash.overdue')} (${overdue.length})</h3>
        <${Table} testid="overdue" rows=${overdue} onRow=${(d) => navigate(`#/demands/${d.id}`)} columns=${[
          { title: t('demands.id'), render: (d) => html`<code>${d.id.slice(-8)}</code>` },
          { title: t('demands.resource'), render: (d) => html`<code>${d.resource_code}</code>` },
          { title: t('demands.state'), render: (d) => label('state', d.state) },
          { title: t('demands.deadline'), render: (d) => html`<span class="overdue">${d.deadline}</span>` },
        ]} /></div>
    </div>
    <div class="panel wide"><h2>${t('dash.feedback')}</h2>
      <h3>${t('dash.mean_scores')}</h3>
      <${Bars} testid="ratings-chart" scale=${5} rows=${f.feedback.filter((r) => r.ratings > 0).map((r) => ({ ...r, calls: r.mean_score }))} keyName="code" />
      <${Table} testid="feedback-quality" rows=${f.feedback.map((r) => ({ id: r.code, ...r }))} columns=${resourceColumns()} />
    </div>
    <div class="panel wide"><h2>${t('dash.quality')}</h2>
      <${Table} testid="quality" rows=${q.resources.map((r) => ({ id: r.code, ...r }))} columns=${[
        { title: t('catalog.code'), render: (r) => html`<code>${r.code}</code>` },
        { title: t('catalog.name'), key: 'name' },
        { title: t('catalog.update_cycle'), render: (r) => label('cycle', r.update_cycle) },
        { title: t('dash.age'), render: (r) => (r.age_days === null ? '—' : t('dash.days', { days: r.age_days })) },
        { title: t('dash.fresh'), render: (r) => (r.fresh === null ? '—' : html`<${Badge} kind=${r.fresh ? 'ok' : 'bad'}>${r.fresh ? t('common.yes') : t('common.no')}<//>`) },
        { title: t('dash.rows'), key: 'rows', className: 'num' },
        { title: t('dash.invalid_keys'), key: 'invalid_keys', className: 'num' },
        { title: t('dash.defect_rate'), render: (r) => `${(100 * r.defect_rate).toFixed(2)}%`, className: 'num' },
      ]} />
    </div>`;
}

// The chain's audit reads the whole log, so it runs when the page opens and on request,
// not on every refresh.
function ChainStatus() {
  const [report, setReport] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const verify = () => {
    setBusy(true);
    api('/exchanges/chain').then(
      (r) => {
        setReport(r);
        setError(null);
        setBusy(false);
      },
      (e) => {
        setError(e);
        setBusy(false);
      },
    );
  };
  useEffect(verify, []);
  return html`<div class="panel wide" data-testid="chain"><h2>${t('dash.chain')}</h2>
    <${ErrorBox} error=${error} />
    ${report ? html`<p>
      <${Badge} kind=${report.problem ? 'bad' : 'ok'}>${report.problem ? t('dash.chain_bad') : t('dash.chain_ok')}<//>
      ${' '}${t('dash.records')}: <strong data-testid="chain-records">${report.records}</strong>
      · ${t('dash.head')}: <code title=${report.head_hash}>${report.head_seq ?? '—'} ${report.head_hash.slice(0, 16)}</code>
      ${report.problem ? html`<pre>${JSON.stringify(report.problem, null, 2)}</pre>` : null}
    </p>` : null}
    <button type="button" disabled=${busy} onClick=${verify}>${t('dash.chain_verify')}</button>
  </div>`;
}

