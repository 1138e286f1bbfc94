/* reactions embed: <script src="https://HOST/embed.js" data-site="SITE" async></script>
   and <emoji-reactions data-article="ID"></emoji-reactions> where the bar goes.
   No globals but the element name, no cookies, every error caught. */
(() => {
  const TAG = 'emoji-reactions';
  if (!window.customElements || customElements.get(TAG)) return;

  const script = document.currentScript || document.querySelector('script[src*="embed"][data-site]');
  const option = (name, fallback) => (script && script.getAttribute(`data-${name}`)) || fallback;
  const defaultSite = option('site', '');
  const liveMode = option('live', 'stream'); // stream | poll | off
  const pollMs = Math.max(2, +option('poll', 10) || 10) * 1000;
  const api = new URL('api/v1/reactions', script ? script.src : location.href).href;
  const KEY = 'emoji-reactions';
  const MAX_CHOICES = 500;
  const bars = new Map(); // site+article -> Set of elements showing it
  let pending = new Map(); // site -> Set of articles waiting for the batch GET
  let memory = {};

  const load = () => {
    try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch (e) { return memory; }
  };
  const save = (state) => {
    memory = state;
    try { localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { /* private mode */ }
  };
  const reader = () => {
    const state = load();
    if (!state.t) {
      const bytes = crypto.getRandomValues(new Uint8Array(18));
      state.t = btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_');
      save(state);
    }
    return state.t;
  };
  const choice = (key, value) => {
    const state = load();
    const choices = state.c || (state.c = {});
    if (value === undefined) return choices[key] || null;
    delete choices[key];
    if (value) choices[key] = value;
    const keys = Object.keys(choices);
    for (let i = 0; i < keys.length - MAX_CHOICES; i++) delete choices[keys[i]];
    save(state);
  };

  // Largest-remainder percentages, as the server computes them: they add up to 100.
  const shares = (counts) => {
    const total = counts.reduce((a, b) => a + b, 0);
    if (!total) return counts.map(() => 0);
    const out = counts.map((c) => Math.floor((c * 100) / total));
    const rest = (i) => (counts[i] * 100) % total;
    const order = counts.map((c, i) => i).sort((a, b) => rest(b) - rest(a) || a - b);
    for (let k = 0, left = 100 - out.reduce((a, b) => a + b, 0); k < left; k++) out[order[k]]++;
    return out;
  };

  const request = (url, options) => {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 8000);
    return fetch(url, { credentials: 'omit', signal: abort.signal, ...options })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(r.status))))
      .finally(() => clearTimeout(timer));
  };

  const canonical = () => {
    const link = document.querySelector('link[rel="canonical"]');
    const url = new URL(link ? link.href : location.href, location.href);
    url.search = url.hash = '';
    return url.href;
  };

  const flush = () => {
    const work = pending;
    pending = new Map();
    work.forEach((articles, site) => {
      const list = [...articles];
      for (let i = 0; i < list.length; i += 50) {
        const part = list.slice(i, i + 50);
        const query = new URLSearchParams([['site', site], ...part.map((a) => ['article', a])]);
        request(`${api}/batch?${query}`)
          .then((body) => part.forEach((a) => show(site, a, body.articles[a])))
          .catch(() => part.forEach((a) => show(site, a, null)));
      }
    });
  };

  const show = (site, article, data) => {
    (bars.get(`${site} ${article}`) || []).forEach((bar) => bar.update(data));
  };

  // Live counts: one EventSource per article while one of its bars is on screen and the tab
  // is visible; on repeated failure, polling (the browser revalidates with If-None-Match).
  const links = new Map(); // site+article -> {site, article, source, timer, fails, polls}
  const watch = (site, article) => {
    const key = `${site} ${article}`;
    const wanted = liveMode !== 'off' && !document.hidden
      && [...(bars.get(key) || [])].some((bar) => bar.visible);
    let link = links.get(key);
    if (!link) {
      if (!wanted) return;
      link = { site, article, fails: 0, polls: 0 };
      links.set(key, link);
    }
    if (!wanted) stop(link);
    else if (!link.source && !link.timer) connect(link);
  };
  const stop = (link) => {
    if (link.source) link.source.close();
    clearTimeout(link.timer);
    link.source = link.timer = null;
  };
  const later = (link, ms, run) => {
    link.timer = setTimeout(() => { link.timer = null; run(); }, ms);
  };
  const connect = (link) => {
    const query = new URLSearchParams({ site: link.site, article: link.article });
    if (!window.EventSource || link.fails > 3 || liveMode === 'poll') {
      // Streams keep failing (a proxy, an old browser): poll, and try streaming again later.
      later(link, pollMs, () => request(`${api}?${query}`, { cache: 'no-cache' })
        .then((data) => show(link.site, link.article, data))
        .catch(() => show(link.site, link.article, null))
        .finally(() => {
          if (++link.polls > 30) link.fails = link.polls = 0;
          watch(link.site, link.article);
        }));
      return;
    }
    const source = link.source = new EventSource(`${api.replace(/reactions$/, 'stream')}?${query}`);
    source.addEventListener('counts', (event) => {
      link.fails = 0;
      show(link.site, link.article, JSON.parse(event.data));
    });
    source.onerror = () => {
      stop(link);
      link.fails++;
      later(link, Math.min(30000, 500 * 2 ** link.fails), () => watch(link.site, link.article));
    };
  };
  const seen = window.IntersectionObserver && new IntersectionObserver((entries) => entries.forEach((entry) => {
    entry.target.visible = entry.isIntersecting;
    watch(entry.target.site, entry.target.article);
  }));
  document.addEventListener('visibilitychange', () => links.forEach((l) => watch(l.site, l.article)));

  const CSS = `
:host{display:block;min-height:2.6rem;font:15px/1.2 system-ui,-apple-system,"Segoe UI",sans-serif;
--rx-ink:#1f2328;--rx-muted:#59636e;--rx-bg:#fff;--rx-line:#d0d7de;--rx-fill:#fde7d4;--rx-accent:#c2410c}
@media (prefers-color-scheme:dark){:host{--rx-ink:#e6e1d9;--rx-muted:#a1a7ae;--rx-bg:#202124;
--rx-line:#3c4043;--rx-fill:#4a2a14;--rx-accent:#fdba74}}
.bar{display:flex;flex-wrap:wrap;gap:.4rem;margin:0;padding:0}
button{position:relative;overflow:hidden;display:inline-flex;align-items:center;gap:.35rem;
min-height:2.4rem;padding:.3rem .7rem;border:1px solid var(--rx-line);border-radius:999px;
background:var(--rx-bg);color:var(--rx-ink);font:inherit;cursor:pointer}
button:hover{border-color:var(--rx-accent)}
button:focus-visible{outline:2px solid var(--rx-accent);outline-offset:2px}
button[aria-pressed=true]{border-color:var(--rx-accent);box-shadow:inset 0 0 0 1px var(--rx-accent)}
.fill{position:absolute;inset:0 auto 0 0;background:var(--rx-fill);transition:width .3s ease}
.emoji,.label,.pct{position:relative}
.emoji{font-size:1.15em;font-family:"Apple Color Emoji","Segoe UI Emoji","Noto Color Emoji",sans-serif}
.pct{color:var(--rx-muted);font-variant-numeric:tabular-nums}
[aria-pressed=true] .pct{color:var(--rx-ink);font-weight:600}
.status{color:var(--rx-muted);font-size:.85em;margin:.3rem 0 0}.status:empty{display:none}
@media (prefers-reduced-motion:reduce){.fill{transition:none}}`;
  let sheet = null;
  try {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  } catch (e) { sheet = null; }

  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text) node.textContent = text;
    return node;
  };

  class EmojiReactions extends HTMLElement {
    connectedCallback() {
      try { this.start(); } catch (e) { /* never break the host page */ }
    }

    disconnectedCallback() {
      const set = bars.get(this.key);
      if (set) set.delete(this);
      if (seen) seen.unobserve(this);
      this.visible = false;
      watch(this.site, this.article);
    }

    start() {
      if (!this.shadowRoot) {
        const root = this.attachShadow({ mode: 'open' });
        if (sheet) root.adoptedStyleSheets = [sheet];
        else root.appendChild(el('style', '', CSS));
        this.list = el('div', 'bar');
        this.list.setAttribute('role', 'group');
        this.list.setAttribute('aria-label', this.getAttribute('aria-label') || 'Reactions');
        this.list.part = 'bar';
        this.status = el('p', 'status');
        this.status.setAttribute('role', 'status');
        this.status.part = 'status';
        root.append(this.list, this.status);
        this.chain = Promise.resolve();
      }
      this.site = this.dataset.site || defaultSite;
      const own = !this.dataset.article || document.querySelectorAll(TAG).length === 1;
      this.article = this.dataset.article || canonical();
      this.url = this.dataset.url || (own ? canonical() : '');
      this.title_ = this.dataset.title || (own ? document.title : '');
      this.key = `${this.site} ${this.article}`;
      if (!bars.has(this.key)) bars.set(this.key, new Set());
      bars.get(this.key).add(this);
      if (seen) seen.observe(this);
      else watch(this.site, this.article, (this.visible = true));
      if (this.data) return;
      if (!pending.size) setTimeout(flush, 0);
      if (!pending.has(this.site)) pending.set(this.site, new Set());
      pending.get(this.site).add(this.article);
    }

    update(data) {
      if (!data) {
        this.status.textContent = 'reactions unavailable';
        return;
      }
      this.data = data;
      this.counts = data.reactions.map((r) => r.count);
      this.mine = data.mine !== undefined ? data.mine : choice(this.key);
      this.status.textContent = '';
      this.render();
    }

    render() {
      const reactions = this.data.reactions;
      const percents = shares(this.counts);
      if (this.list.children.length !== reactions.length) {
        this.list.replaceChildren(...reactions.map((r) => {
          const button = el('button');
          button.type = 'button';
          button.part = 'button';
          button.append(el('span', 'fill'), el('span', 'emoji', r.emoji), el('span', 'label', r.label), el('span', 'pct'));
          button.firstChild.setAttribute('aria-hidden', 'true');
          button.children[1].setAttribute('aria-hidden', 'true');
          button.addEventListener('click', () => this.choose(r.id));
          return button;
        }));
      }
      reactions.forEach((r, i) => {
        const button = this.list.children[i];
        button.setAttribute('aria-pressed', String(r.id === this.mine));
        button.setAttribute('aria-label', `${r.label}, ${percents[i]}%`);
        button.firstChild.style.width = `${percents[i]}%`;
        button.lastChild.textContent = `${percents[i]} %`;
      });
    }

    choose(id) {
      try {
        const before = { counts: this.counts.slice(), mine: this.mine };
        const ids = this.data.reactions.map((r) => r.id);
        const next = this.mine === id ? null : id;
        if (this.mine) this.counts[ids.indexOf(this.mine)]--;
        if (next) this.counts[ids.indexOf(next)]++;
        this.mine = next;
        choice(this.key, next);
        this.render();
        const body = JSON.stringify({
          site: this.site, article: this.article, reader: reader(), reaction: next,
          url: this.url || undefined, title: this.title_ || undefined,
        });
        const post = () => request(api, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })
          .then((data) => { choice(this.key, data.mine); show(this.site, this.article, data); })
          .catch(() => {
            this.counts = before.counts;
            this.mine = before.mine;
            choice(this.key, before.mine);
            this.render();
            this.status.textContent = 'reactions unavailable';
          });
        this.chain = this.chain.then(post);
      } catch (e) { /* never break the host page */ }
    }
  }

  try {
    customElements.define(TAG, EmojiReactions);
    const place = () => {
      if (document.querySelector(TAG)) return;
      const bar = document.createElement(TAG);
      const article = document.querySelector('article');
      if (article) article.after(bar);
      else (document.querySelector('main') || document.body).append(bar);
    };
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', place);
    else place();
  } catch (e) { /* never break the host page */ }
})();
