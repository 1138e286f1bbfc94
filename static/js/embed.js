/* reactions embed: <script src="https://HOST/embed.js" data-site="SITE" async></script>
   and <emoji-reactions data-article="ID"></emoji-reactions> where the bar goes.
   No globals but the element name, no cookies, every error caught.
   This is the readable source; the server ships embed.min.js, built from it by
   scripts/build_embed.py (terser). */
(() => {
  const TAG = 'emoji-reactions';
  if (!window.customElements || customElements.get(TAG)) return;

  const doc = document;
  const script = doc.currentScript;
  const option = (name, fallback) => script?.getAttribute('data-' + name) || fallback;
  const live = option('live', 'stream'); // stream | poll | off
  const pollMs = Math.max(2, +option('poll', 10) || 10) * 1e3;
  const api = new URL('api/v1/reactions', script?.src || location.href).href;
  const bars = new Map(); // "site article" -> Set of elements showing it
  const links = new Map(); // "site article" -> live connection state
  let pending = new Map(); // site -> Set of articles waiting for the batch GET
  let memory = {};

  // The reader's token and choices, in localStorage (no cookies); memory when it is blocked.
  const load = () => {
    try { return JSON.parse(localStorage.getItem(TAG)) || {}; } catch (e) { return memory; }
  };
  const save = (state) => {
    memory = state;
    try { localStorage.setItem(TAG, JSON.stringify(state)); } catch (e) { /* private mode */ }
  };
  const reader = () => {
    const state = load();
    if (!state.t) {
      state.t = Array.from(crypto.getRandomValues(new Uint32Array(4)), (n) => (n + 2 ** 32).toString(36)).join('_');
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
    const keys = Object.keys(choices); // oldest first: keep the newest 500
    if (keys.length > 500) delete choices[keys[0]];
    save(state);
  };

  // Largest-remainder percentages, as the server computes them: they add up to 100.
  const shares = (counts) => {
    const total = counts.reduce((a, b) => a + b, 0);
    const out = counts.map((c) => total && Math.floor((c * 100) / total));
    const rest = (i) => (counts[i] * 100) % total;
    if (total) {
      counts.map((c, i) => i).sort((a, b) => rest(b) - rest(a) || a - b)
        .slice(0, 100 - out.reduce((a, b) => a + b, 0)).forEach((i) => out[i]++);
    }
    return out;
  };

  const request = (url, options) => fetch(url, { credentials: 'omit', signal: AbortSignal.timeout(8e3), ...options })
    .then((r) => (r.ok ? r.json() : Promise.reject(r.status)));

  const show = (site, article, data) => (bars.get(site + ' ' + article) || []).forEach((bar) => bar.update(data));

  // One GET for all the bars on the page (50 articles a request).
  const flush = () => {
    pending.forEach((articles, site) => {
      const list = [...articles];
      for (let i = 0; i < list.length; i += 50) {
        const part = list.slice(i, i + 50);
        request(`${api}/batch?` + new URLSearchParams([['site', site], ...part.map((a) => ['article', a])]))
          .then((body) => part.forEach((a) => show(site, a, body.articles[a])))
          .catch(() => part.forEach((a) => show(site, a, null)));
      }
    });
    pending = new Map();
  };

  // Live counts: one EventSource per article while one of its bars is on screen and the tab is
  // visible. After repeated failures it polls instead; the browser revalidates (304s).
  const watch = (site, article) => {
    const key = site + ' ' + article;
    const wanted = live != 'off' && !doc.hidden && [...(bars.get(key) || [])].some((bar) => bar.visible);
    const link = links.get(key) || { site, article, fails: 0, polls: 0 };
    links.set(key, link);
    if (!wanted) stop(link);
    else if (!link.source && !link.timer) connect(link);
  };
  const stop = (link) => {
    link.source?.close();
    clearTimeout(link.timer);
    link.source = link.timer = null;
  };
  const later = (link, ms, run) => link.timer = setTimeout(() => run(link.timer = null), ms);
  const connect = (link) => {
    const query = new URLSearchParams({ site: link.site, article: link.article });
    const again = () => watch(link.site, link.article);
    if (link.fails > 3 || live == 'poll') {
      later(link, pollMs, () => request(api + '?' + query, { cache: 'no-cache' })
        .then((data) => show(link.site, link.article, data), () => show(link.site, link.article))
        .finally(() => {
          if (++link.polls > 30) link.fails = link.polls = 0; // then try streaming again
          again();
        }));
      return;
    }
    const source = link.source = new EventSource(api.replace(/reactions$/, 'stream?') + query);
    source.addEventListener('counts', (event) => {
      link.fails = 0;
      show(link.site, link.article, JSON.parse(event.data));
    });
    source.onerror = () => {
      stop(link);
      later(link, Math.min(3e4, 500 * 2 ** ++link.fails), again);
    };
  };
  const seen = new IntersectionObserver((entries) => entries.forEach((entry) => {
    entry.target.visible = entry.isIntersecting;
    watch(entry.target.site, entry.target.article);
  }));
  doc.addEventListener('visibilitychange', () => links.forEach((link) => watch(link.site, link.article)));

  const CSS = `:host{display:block;min-height:5.2rem;font:15px/1.2 system-ui,sans-serif;--rx-ink:#1f2328;
--rx-bg:#fff;--rx-line:#d0d7de;--rx-fill:#fde7d4;--rx-accent:#c2410c;color:var(--rx-ink);
container-type:inline-size}
@media (prefers-color-scheme:dark){:host{--rx-ink:#e6e1d9;--rx-bg:#202124;--rx-line:#3c4043;
--rx-fill:#4a2a14;--rx-accent:#fdba74}}
div{display:flex;gap:.4rem;overflow-x:auto}
button{position:relative;display:grid;justify-items:center;gap:.15rem;min-width:4.4rem;padding:.4rem;
border:1px solid var(--rx-line);border-radius:.8rem;background:var(--rx-bg);color:inherit;
font:inherit;cursor:pointer;overflow:hidden;flex:none}
:hover,[aria-pressed=true]{border-color:var(--rx-accent)}
:focus-visible{outline:2px solid var(--rx-accent)}
i{position:absolute;inset:auto 0 0;background:var(--rx-fill);transition:height .3s}
b,span,small{position:relative}
b{font:1.5em "Noto Color Emoji",sans-serif}
small,p{opacity:.75}
[aria-pressed=true] small{opacity:1;font-weight:600}
p{font-size:.85em;margin:.3rem 0 0}p:empty{display:none}
@media (prefers-reduced-motion:reduce){i{transition:none}}
@container (width<30rem){span{display:none}}`;
  let sheet;
  try {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  } catch (e) { sheet = 0; }

  const el = (tag, text, part) => {
    const node = doc.createElement(tag);
    if (text) node.textContent = text;
    if (part) node.part = part;
    return node;
  };
  const UNAVAILABLE = 'reactions unavailable';

  customElements.define(TAG, class extends HTMLElement {
    connectedCallback() {
      try { this.start(); } catch (e) { /* never break the host page */ }
    }

    disconnectedCallback() {
      bars.get(this.key)?.delete(this);
      seen.unobserve(this);
      this.visible = 0;
      watch(this.site, this.article);
    }

    start() {
      const data = this.dataset;
      if (!this.list) {
        const root = this.attachShadow({ mode: 'open' });
        if (sheet) root.adoptedStyleSheets = [sheet];
        else root.append(el('style', CSS));
        this.list = el('div', '', 'bar');
        this.list.role = 'group';
        this.list.ariaLabel = this.getAttribute('aria-label') || 'Reactions';
        this.status = el('p', '', 'status');
        this.status.role = 'status';
        root.append(this.list, this.status);
        this.chain = Promise.resolve();
      }
      const link = doc.querySelector('link[rel=canonical]');
      const page = new URL((link || location).href);
      page.search = page.hash = '';
      // Title and URL describe the article only when this bar is the page's own.
      const own = !data.article || doc.querySelectorAll(TAG).length == 1;
      this.site = data.site || option('site');
      this.article = data.article || page.href;
      this.url = data.url || (own ? page.href : undefined);
      this.heading = data.title || (own ? doc.title : undefined);
      this.key = this.site + ' ' + this.article;
      bars.set(this.key, (bars.get(this.key) || new Set()).add(this));
      seen.observe(this);
      if (this.data) return;
      if (!pending.size) setTimeout(flush);
      pending.set(this.site, (pending.get(this.site) || new Set()).add(this.article));
    }

    update(data) {
      if (!data) return this.status.textContent = UNAVAILABLE; // keep the last numbers
      this.data = data;
      this.counts = data.reactions.map((r) => r.count);
      this.mine = data.mine !== undefined ? data.mine : choice(this.key);
      this.status.textContent = '';
      this.render();
    }

    render() {
      const reactions = this.data.reactions;
      const percents = shares(this.counts);
      // Rebuilt whenever the site's set changes (an id, emoji or label), not only its size.
      const set = JSON.stringify(reactions.map((r) => [r.id, r.emoji, r.label]));
      if (this.set != set) {
        this.set = set;
        this.list.replaceChildren(...reactions.map((r) => {
          const button = el('button', '', 'button');
          const fill = el('i');
          const emoji = el('b', r.emoji);
          fill.ariaHidden = emoji.ariaHidden = 'true';
          button.append(fill, emoji, el('span', r.label), el('small'));
          button.onclick = () => this.choose(r.id);
          return button;
        }));
      }
      reactions.forEach((r, i) => {
        const button = this.list.children[i];
        button.ariaPressed = r.id === this.mine;
        button.ariaLabel = `${r.label}, ${percents[i]}%`;
        button.firstChild.style.height = percents[i] + '%';
        button.lastChild.textContent = percents[i] + ' %';
      });
    }

    choose(id) {
      try {
        const { counts, mine } = this;
        const ids = this.data.reactions.map((r) => r.id);
        const next = mine === id ? null : id;
        // Optimistic: the reader sees the change at once; the server's numbers follow.
        this.counts = counts.map((c, i) => c - (ids[i] === mine) + (ids[i] === next));
        this.mine = next;
        choice(this.key, next);
        this.render();
        const body = JSON.stringify({
          site: this.site, article: this.article, reader: reader(), reaction: next,
          url: this.url, title: this.heading,
        });
        this.chain = this.chain.then(() => request(api, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })
          .then((data) => {
            choice(this.key, data.mine);
            show(this.site, this.article, data);
          }, (status) => {
            Object.assign(this, { counts, mine });
            choice(this.key, mine);
            this.render();
            // 400: the site's set changed under this bar (a retired reaction): show the set
            // the server has now, and the reader's earlier choice if it is still offered.
            (status == 400 ? request(api + '?' + new URLSearchParams({ site: this.site, article: this.article }), { cache: 'no-cache' }) : Promise.reject())
              .then((data) => show(this.site, this.article, data), () => this.status.textContent = UNAVAILABLE);
          }));
      } catch (e) { /* never break the host page */ }
    }
  });

  // No element on the page: one bar right after the first <article> (else in <main> or <body>).
  const place = () => {
    if (doc.querySelector(TAG)) return;
    const article = doc.querySelector('article');
    const bar = doc.createElement(TAG);
    if (article) article.after(bar);
    else (doc.querySelector('main') || doc.body).append(bar);
  };
  if (doc.readyState == 'loading') doc.addEventListener('DOMContentLoaded', place);
  else place();
})();
