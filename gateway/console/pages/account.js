// One's own account: changing the password. The gateway checks the current password and the
// new one's length, and ends the person's other sessions.

import { html, useState } from '../vendor/htm-preact.js';
import { api } from '../api.js';
import { t } from '../i18n.js';
import { ErrorBox } from '../ui.js';

export function Account() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [again, setAgain] = useState('');
  const [error, setError] = useState(null);
  const [changed, setChanged] = useState(false);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setError(null);
    setChanged(false);
    if (next !== again) {
      setError({ code: '', message: t('account.mismatch') });
      return;
    }
    setBusy(true);
    try {
      await api('/me/password', { method: 'PUT', body: { current_password: current, new_password: next } });
      setChanged(true);
      setCurrent('');
      setNext('');
      setAgain('');
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<section>
    <h1>${t('account.title')}</h1>
    <form class="card" onSubmit=${submit} data-testid="password-form">
      <label class="field"><span>${t('account.current')}</span>
        <input name="current_password" type="password" autocomplete="current-password" required value=${current}
          onInput=${(e) => setCurrent(e.target.value)} /></label>
      <label class="field"><span>${t('account.new')}</span>
        <input name="new_password" type="password" autocomplete="new-password" required minlength="12" value=${next}
          onInput=${(e) => setNext(e.target.value)} /></label>
      <label class="field"><span>${t('account.again')}</span>
        <input name="new_password_again" type="password" autocomplete="new-password" required minlength="12" value=${again}
          onInput=${(e) => setAgain(e.target.value)} /></label>
      <${ErrorBox} error=${error} />
      ${changed ? html`<p class="notice" role="status" data-testid="password-changed">${t('account.changed')}</p>` : null}
      <div class="row"><button type="submit" class="primary" disabled=${busy}>${t('account.submit')}</button></div>
    </form>
  </section>`;
}
