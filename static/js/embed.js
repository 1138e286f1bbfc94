/* reactions embed: <script src="https://HOST/embed.js" data-site="SITE" async></script>
   and <emoji-reactions data-article="ID"></emoji-reactions> where the bar goes
   (data-set="thumbs": one of the site's named reaction sets; on the script: the page's).
   No globals but the element name, no cookies, every error caught.
   This is the readable source; the server ships embed.min.js, built from it by
   scripts/build_embed.py (terser). */
(() => {
  const TAG = 'emoji-reactions';
  if (!window.customElements || customElements.get(TAG)) return;

  const doc = document;
  const script = doc.currentScript;
  const option = (name, fallback) => script?.dataset[name] || fallback;
  const live = option('live', 'stream'); // stream | poll | off
  const pollMs = Math.max(2, +option('poll', 10) || 10) * 1e3;
  const api = new URL('api/v1/reactions', script?.src || location.href).href;
  const me = api.replace(/reactions$/, 'me?site=');
  // A bar's key is "scope article", its scope "site" (the default set) or "site/set", as the
  // server's; site and set names have no space or "/".
  const bars = new Map(); // key -> Set of elements showing it
  const links = new Map(); // key -> live connection state
  const pending = new Map(); // site -> Set of keys waiting for the batch GET
  const known = new Map(); // scope -> its reactions, as last read
  const scope = (site, set) => site + (set ? '/' + set : '');
  const parse = (key) => {
    const i = key.indexOf(' ');
    const [site, set] = key.slice(0, i).split('/');
    return [site, set, key.slice(i + 1)];
  };
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
      state.t = crypto.getRandomValues(new Uint32Array(4)).join('_'); // 128 bits
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

  // Rejects with the server's {error, detail} (or whatever failed first).
  const request = (url, options) => fetch(url, { credentials: 'omit', signal: AbortSignal.timeout(8e3), ...options })
    .then((r) => r.json().then((body) => (r.ok ? body : Promise.reject(body))));

  const add = (map, key, value) => map.set(key, (map.get(key) || new Set()).add(value));
  const show = (key, data) => bars.get(key)?.forEach((bar) => bar.update(data));

  // One GET for all the bars of a site on the page, whatever their sets (50 a request).
  const flush = () => {
    pending.forEach((keys, site) => {
      const list = [...keys];
      for (let i = 0; i < list.length; i += 50) {
        const part = list.slice(i, i + 50).map(parse);
        request(`${api}/batch?` + new URLSearchParams([['site', site], ...part.map(([, set, a]) => set ? ['set_article', set + ':' + a] : ['article', a])]))
          .catch(() => ({})) // then every bar says it is unavailable
          .then((body) => part.forEach(([, set, a], j) => show(list[i + j], (set ? body.sets?.[set] : body.articles)?.[a])));
      }
    });
    pending.clear();
  };

  // Live counts: one EventSource per article while one of its bars is on screen and the tab is
  // visible. After repeated failures it polls instead; the browser revalidates (the counts
  // are `no-cache`: 304s). watch() takes a bar or a link: both have key, site, set, article.
  const watch = ({ key, site, set, article }) => {
    const wanted = live != 'off' && !doc.hidden && [...(bars.get(key) || [])].some((bar) => bar.visible);
    const link = links.get(key) || { key, site, set, article, fails: 0 };
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
    // set= (empty) is the default set.
    const query = new URLSearchParams({ site: link.site, article: link.article, set: link.set });
    const shown = (data) => show(link.key, data);
    const poll = () => request(api + '?' + query).then(shown, () => shown()).finally(() => watch(link));
    if (link.fails > 3 || live == 'poll') {
      // For the rest of the page's life: four streams failing in a row are more often a
      // proxy that buffers them than an outage.
      later(link, pollMs, poll);
      return;
    }
    const source = link.source = new EventSource(api.replace(/reactions$/, 'stream?') + query);
    source.addEventListener('counts', (event) => {
      link.fails = 0;
      shown(JSON.parse(event.data));
    });
    source.onerror = () => {
      stop(link);
      // The counts first, then the stream again: a reader refused a stream (429: a cap) or
      // whose server stopped sees the news at each retry, not only once polling starts.
      later(link, 500 * 2 ** ++link.fails, poll); // 1 s, 2 s, 4 s, 8 s, then polls
    };
  };
  const seen = new IntersectionObserver((entries) => entries.forEach((entry) => {
    entry.target.visible = entry.isIntersecting;
    watch(entry.target);
  }));
  doc.addEventListener('visibilitychange', () => links.forEach(watch));

  // A grid of fixed rows, so a host page can reserve the bar's height (see the README): up to
  // 4 buttons a row when the bar is narrower than 42em (546px), up to 8 from there; render()
  // sets the columns (--n, --w) so the rows are balanced. A set of the compact style (.c) is
  // one row of emoji and counts, 28px high. Line ends are escaped: not shipped.
  const CSS = `:host{display:block;min-height:66px;font:13px/1.2 system-ui,sans-serif;--rx-ink:#1f2328;\
--rx-bg:#fff;--rx-line:#d0d7de;--rx-fill:#fde7d4;--rx-accent:#c2410c;color:var(--rx-ink);\
container-type:inline-size}\
@media (prefers-color-scheme:dark){:host{--rx-ink:#e6e1d9;--rx-bg:#202124;--rx-line:#3c4043;\
--rx-fill:#4a2a14;--rx-accent:#fdba74}}\
div{--c:var(--n);display:grid;gap:6px;grid:auto-flow 66px/repeat(var(--c),minmax(0,1fr))}\
@container (width>=42em){div{--c:var(--w)}}\
button{position:relative;display:grid;place-content:center;border:1px solid var(--rx-line);\
border-radius:12px;background:var(--rx-bg);color:inherit;font:inherit;cursor:pointer;overflow:hidden}\
:hover,[aria-pressed=true]{border-color:var(--rx-accent)}\
:focus-visible{outline:2px solid var(--rx-accent)}\
i{position:absolute;inset:auto 0 0;background:var(--rx-fill)}\
b,span,small{position:relative;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}\
b{font:22px/1.2 "Noto Color Emoji",sans-serif}\
[aria-pressed=true]{font-weight:600}\
p{margin:4px 0 0}p:empty{display:none}\
:host([data-set]){min-height:28px}.c{display:flex}.c button{display:flex;gap:4px;padding:4px 9px}\
.c i,.c span{display:none}.c b{font-size:15px}\
details{margin-top:4px}summary{cursor:pointer}ul{margin:4px 0}li button{padding:6px 10px}\
@media (prefers-reduced-motion:no-preference){i{transition:height .3s}}`;
  let sheet;
  try {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  } catch (e) { sheet = 0; }

  const el = (tag, text = '', part) => {
    const node = doc.createElement(tag);
    node.textContent = text;
    if (part) node.part = part;
    return node;
  };
  const UNAVAILABLE = 'reactions unavailable';
  // A page on an origin the site does not allow: say so, and tell its owner what to do.
  const refusal = (error) => error?.error == 'origin_not_allowed'
    ? (console.warn('reactions: ' + error.detail), 'reactions are not allowed on ' + location.host)
    : UNAVAILABLE;

  customElements.define(TAG, class extends HTMLElement {
    connectedCallback() {
      try { this.start(); } catch (e) { /* never break the host page */ }
    }

    disconnectedCallback() {
      bars.get(this.key)?.delete(this);
      seen.unobserve(this);
      this.visible = 0;
      watch(this);
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
        // The reader's own reactions on this site (GET /me when opened), shown once the
        // reader has one, so a new reader's bar keeps the height the README says to reserve.
        this.own = el('details', '', 'mine');
        this.own.append(el('summary', 'Your reactions'), el('ul'));
        this.own.ontoggle = () => this.own.open && this.yours();
        root.append(this.list, this.status, this.own);
        this.chain = Promise.resolve();
      }
      // The canonical URL is the page's identity, query and all (WordPress's plain permalinks
      // are ?p=123; the server drops a fragment); the address bar's query is only tracking and
      // state.
      const page = doc.querySelector('link[rel=canonical]')?.href || location.origin + location.pathname;
      // Title and URL describe the article only when this bar is the page's own.
      // (Several bars of one article, e.g. its two sets, are all the page's own.)
      const own = !data.article || [...doc.querySelectorAll(TAG)].every((bar) => bar.dataset.article == data.article);
      this.site = data.site || option('site');
      this.set = data.set ?? option('set', '');
      this.article = data.article || page;
      this.url = data.url || (own ? page : undefined);
      this.heading = data.title || (own ? doc.title : undefined);
      this.key = scope(this.site, this.set) + ' ' + this.article;
      add(bars, this.key, this);
      seen.observe(this);
      if (this.data) return;
      if (!pending.size) setTimeout(flush);
      add(pending, this.site, this.key);
    }

    update(data) {
      if (!data) return this.status.textContent = UNAVAILABLE; // keep the last numbers
      this.data = data;
      known.set(scope(this.site, this.set), data.reactions);
      this.counts = data.reactions.map((r) => r.count);
      this.mine = data.mine !== undefined ? data.mine : choice(this.key);
      this.status.textContent = '';
      this.render();
    }

    render() {
      const reactions = this.data.reactions;
      const percents = shares(this.counts);
      const compact = this.data.style == 'count';
      // Rebuilt whenever the reaction set changes (an id, emoji or label), not only its size.
      const shape = reactions.map((r) => [r.id, r.emoji, r.label]).join() + compact;
      if (this.shape != shape) {
        this.shape = shape;
        const n = reactions.length;
        const columns = (most) => Math.ceil(n / Math.ceil(n / most));
        this.list.style.cssText = `--n:${columns(4)};--w:${columns(8)}`;
        this.list.className = compact ? 'c' : '';
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
      this.own.hidden = !this.own.open && !Object.keys(load().c || {}).some((k) => parse(k)[0] == this.site);
      reactions.forEach((r, i) => {
        const button = this.list.children[i];
        button.ariaPressed = r.id === this.mine;
        button.firstChild.style.height = percents[i] + '%';
        // Compact: the count, and the label (hidden) named with it for screen readers.
        button.lastChild.textContent = compact ? this.counts[i] : percents[i] + '%';
        button.ariaLabel = compact ? r.label + ' ' + this.counts[i] : null;
      });
    }

    // Lists the reader's reactions on the site, in every set; with DELETE, takes them all
    // back, and every bar of the site on the page reads its counts again.
    yours(method) {
      const list = this.own.lastChild;
      const token = load().t;
      const shown = ({ reactions }) => {
        // The emoji as a bar of that set showed it, else the reaction's id.
        const emoji = (r) => known.get(scope(this.site, r.set))?.find((x) => x.id == r.reaction)?.emoji || r.reaction;
        if (method) {
          reactions.forEach((r) => choice(scope(this.site, r.set) + ' ' + r.article, null));
          bars.forEach((set) => set.forEach((bar) => bar.site == this.site && add(pending, bar.site, bar.key)));
          flush(reactions = []);
        }
        // The button only while there is something to take back: the bar's own are its six.
        const all = el('li', reactions.length ? '' : 'None');
        const erase = el('button', 'Take back all');
        erase.onclick = () => this.yours('DELETE');
        if (reactions.length) all.append(erase);
        list.replaceChildren(...reactions.map((r) => el('li', emoji(r) + ' ' + (r.title || r.article) + (r.set && ' · ' + r.set))), all);
      };
      if (!token) return shown({ reactions: [] });
      request(me + encodeURIComponent(this.site), { method, headers: { 'X-Reader-Token': token } })
        .then(shown, (error) => list.replaceChildren(el('li', refusal(error))));
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
          site: this.site, set: this.set, article: this.article, reader: reader(), reaction: next,
          url: this.url, title: this.heading,
        });
        this.chain = this.chain.then(() => request(api, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })
          // Only the answer to the newest click (whose choice is saved): an earlier one's
          // must not undo it.
          .then((data) => data.mine === this.mine && show(this.key, data), (error) => {
            Object.assign(this, { counts, mine });
            choice(this.key, mine);
            this.render();
            // invalid_field: the site's set changed under this bar (a retired reaction): read
            // it again, to show the set the server has now, with the earlier choice if offered.
            if (error?.error == 'invalid_field') flush(add(pending, this.site, this.key));
            else this.status.textContent = refusal(error);
          }));
      } catch (e) { /* never break the host page */ }
    }
  });

  // No element on the page: a bar after the page's <article> when it is the only one. A list
  // of articles (home, category, search) or a page with none is no article to count. Comments
  // are articles too: nested in the post's (as HTML's own example does) or WordPress's.
  const place = () => {
    const articles = doc.querySelectorAll('article:not(article article,.comment-body)');
    if (!doc.querySelector(TAG) && articles.length == 1) articles[0].after(doc.createElement(TAG));
  };
  if (doc.readyState == 'loading') doc.addEventListener('DOMContentLoaded', place);
  else place();
})();
