// The console's shell: sign-in, the role-aware navigation, the language switch and the
// hash router that picks a page. Pages live in `pages/`; each asks the API for what it shows,
// so what a role may see is decided by the gateway, and the navigation only leaves out what
// the role could not use.

import { html, render, useEffect, useState } from './vendor/htm-preact.js';
import { api, signIn, signOut, signedIn, whenSignedOut } from './api.js';
import { lang, setLang, t, label } from './i18n.js';
import { ErrorBox, Loading } from './ui.js';
import { Catalog, ResourceDetail, ResourceEditor } from './pages/catalog.js';
import { DemandDetail, DemandForm, Demands, ReviewQueue } from './pages/demands.js';
import { GrantDetail, Grants } from './pages/grants.js';
import { Dashboard } from './pages/dashboard.js';
import { ExchangeDetail, Exchanges } from './pages/exchanges.js';
import { Account } from './pages/account.js';
import { Systems } from './pages/systems.js';
import { Trail } from './pages/trail.js';
import { Feedback } from './pages/feedback.js';
import { Reports } from './pages/reports.js';
import { Federation } from './pages/federation.js';
import { Licences } from './pages/licences.js';

// Who may open which page. The API enforces the same rules; this keeps the navigation honest.
const PAGES = [
  { path: 'dashboard', nav: 'nav.dashboard', roles: ['operator', 'platform_admin'] },
  { path: 'catalog', nav: 'nav.catalog', roles: null },
  { path: 'demands', nav: 'nav.demands', roles: ['demander', 'supplier_admin', 'data_office_reviewer', 'operator', 'platform_admin'] },
  { path: 'review', nav: 'nav.review', roles: ['data_office_reviewer', 'supplier_admin'] },
  { path: 'grants', nav: 'nav.grants', roles: null },
  { path: 'exchanges', nav: 'nav.exchanges', roles: null },
  { path: 'feedback', nav: 'nav.feedback', roles: ['demander', 'supplier_admin', 'data_office_reviewer', 'operator', 'platform_admin'] },
  { path: 'reports', nav: 'nav.reports', roles: ['data_office_reviewer', 'operator', 'platform_admin'] },
  { path: 'licences', nav: 'nav.licences', roles: null },
  { path: 'federation', nav: 'nav.federation', roles: ['demander', 'supplier_admin', 'data_office_reviewer', 'operator', 'platform_admin'] },
  { path: 'systems', nav: 'nav.systems', roles: ['demander', 'supplier_admin', 'platform_admin'] },
  { path: 'trail', nav: 'nav.trail', roles: ['platform_admin'] },
  // Reached from the signed-in person's name, not the navigation.
  { path: 'account', nav: null, roles: null },
];

function allowed(page, roles) {
  return page.roles === null || page.roles.some((r) => roles.includes(r));
}

function useHash() {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const changed = () => setHash(window.location.hash);
    window.addEventListener('hashchange', changed);
    return () => window.removeEventListener('hashchange', changed);
  }, []);
  return hash.replace(/^#\/?/, '').split('?')[0].split('/').filter(Boolean).map(decodeURIComponent);
}

function SignIn({ onSignedIn }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(username, password);
      onSignedIn();
    } catch (e) {
      setError(e.status === 401 ? { ...e, message: t('auth.failed'), code: e.code } : e);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <form onSubmit=${submit} class="card" aria-label=${t('auth.title')}>
      <h1>${t('app.title')}</h1>
      <label class="field"><span>${t('auth.username')}</span>
        <input name="username" autocomplete="username" required value=${username} onInput=${(e) => setUsername(e.target.value)} /></label>
      <label class="field"><span>${t('auth.password')}</span>
        <input name="password" type="password" autocomplete="current-password" required value=${password}
          onInput=${(e) => setPassword(e.target.value)} /></label>
      <${ErrorBox} error=${error} />
      <div class="row">
        <button type="submit" class="primary" disabled=${busy}>${t('auth.submit')}</button>
        <${LanguageSwitch} />
      </div>
    </form>
  </main>`;
}

function LanguageSwitch() {
  const [, redraw] = useState(0);
  const toggle = () => {
    setLang(lang() === 'zh' ? 'en' : 'zh');
    redraw((n) => n + 1);
    window.dispatchEvent(new Event('tongban:lang'));
  };
  return html`<button type="button" class="link" data-testid="lang" onClick=${toggle}>${t('lang.switch')}</button>`;
}

function Page({ route, me }) {
  const roles = me.user.roles;
  const [section, id, sub] = route;
  const page = PAGES.find((p) => p.path === section);
  if (!page) return html`<p>${t('common.not_found')}</p>`;
  if (!allowed(page, roles)) return html`<p class="error" role="alert" data-testid="forbidden">${t('common.forbidden')}</p>`;
  switch (section) {
    case 'dashboard':
      return html`<${Dashboard} me=${me} />`;
    case 'catalog':
      if (id === 'new') return html`<${ResourceEditor} me=${me} />`;
      if (id && sub === 'edit') return html`<${ResourceEditor} me=${me} code=${id} />`;
      if (id) return html`<${ResourceDetail} me=${me} code=${id} />`;
      return html`<${Catalog} me=${me} />`;
    case 'demands':
      if (id === 'new') return html`<${DemandForm} me=${me} />`;
      if (id) return html`<${DemandDetail} me=${me} id=${id} />`;
      return html`<${Demands} me=${me} />`;
    case 'review':
      return html`<${ReviewQueue} me=${me} />`;
    case 'grants':
      return id ? html`<${GrantDetail} me=${me} id=${id} />` : html`<${Grants} me=${me} />`;
    case 'exchanges':
      return id ? html`<${ExchangeDetail} id=${id} />` : html`<${Exchanges} me=${me} />`;
    case 'account':
      return html`<${Account} />`;
    case 'systems':
      return html`<${Systems} />`;
    case 'trail':
      return html`<${Trail} />`;
    case 'feedback':
      return html`<${Feedback} me=${me} />`;
    case 'reports':
      return html`<${Reports} />`;
    case 'federation':
      return html`<${Federation} me=${me} />`;
    case 'licences':
      return html`<${Licences} me=${me} />`;
    default:
      return null;
  }
}

function Shell({ me, onSignOut }) {
  const route = useHash();
  const roles = me.user.roles;
  const home = allowed(PAGES[0], roles) ? 'dashboard' : 'catalog';
  useEffect(() => {
    if (!route.length) window.location.replace(`#/${home}`);
  }, [route.length]);
  const pages = PAGES.filter((p) => p.nav && allowed(p, roles));
  return html`<div class="shell">
    <header class="top">
      <a class="brand" href=${`#/${home}`}>${t('app.title')}</a>
      <nav aria-label="main">
        ${pages.map(
          (p) => html`<a href=${`#/${p.path}`} data-nav=${p.path} class=${route[0] === p.path ? 'active' : ''}>${t(p.nav)}</a>`,
        )}
      </nav>
      <div class="who">
        <a href="#/account" data-testid="who" title=${`${me.department.name} · ${t('account.title')}`}>${me.user.display_name} · ${roles.map((r) => label('role', r)).join('、')}</a>
        <${LanguageSwitch} />
        <button type="button" class="link" onClick=${onSignOut}>${t('auth.signout')}</button>
      </div>
    </header>
    <main class="content">${route.length ? html`<${Page} key=${route.join('/')} route=${route} me=${me} />` : null}</main>
  </div>`;
}

function App() {
  // `undefined` while asking who is signed in, `null` when nobody is.
  const [me, setMe] = useState(undefined);
  const [error, setError] = useState(null);
  const [, redraw] = useState(0);
  const load = () => {
    if (!signedIn()) {
      setMe(null);
      return;
    }
    api('/me').then(
      (who) => {
        if (who.kind === 'user') setMe(who);
        else setMe(null);
      },
      (e) => (e.status === 401 ? setMe(null) : setError(e)),
    );
  };
  useEffect(() => {
    setLang(lang());
    whenSignedOut(() => setMe(null));
    const relabel = () => redraw((n) => n + 1);
    window.addEventListener('tongban:lang', relabel);
    load();
    return () => window.removeEventListener('tongban:lang', relabel);
  }, []);
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (me === undefined) return html`<${Loading} />`;
  if (me === null) return html`<${SignIn} onSignedIn=${load} />`;
  const out = async () => {
    await signOut().catch(() => {});
    window.location.hash = '';
    setMe(null);
  };
  return html`<${Shell} key=${lang()} me=${me} onSignOut=${out} />`;
}

render(html`<${App} />`, document.getElementById('app'));
