/* The flame graph: one self-contained HTML file (inline CSS, JavaScript and data; nothing
 * fetched), drawn as positioned <div> elements so the page works in any browser from disk.
 * Callers are at the top, the code that allocated at the bottom of each tower; a box's width is
 * its share of the bytes. Click a box to zoom to it (click the top bar to go back), hover for
 * bytes and share, type in the search box to highlight functions (with the matched total). The
 * page's address keeps the state: OUT.html#search=REGEX&zoom=FUNCTION opens searched and zoomed
 * (to the largest box of that function). A script error is shown on the page. */
#include "mprof_report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The tree of stacks, callers first: nodes in one array, children found through one hash table
 * keyed by (parent, name) so that a node with 300 000 children costs no more per lookup than one
 * with three, and walked without recursion so that a 200 000-frame stack cannot exhaust the C
 * stack. Stacks deeper than MPROF_FLAME_MAX_DEPTH keep their callers' end and fold the rest into
 * one box, which also keeps the page's own layout shallow. */
#define MPROF_FLAME_MAX_DEPTH 1024

typedef struct node_s {
  const char* name;
  int64_t value;
  uint32_t parent, first, next; /* indices; 0 = none (node 0 is the root) */
} node_t;

typedef struct tree_s {
  node_t* v;
  size_t n, cap;
  uint32_t* slots; /* node index, 0 = empty */
  size_t nslots;
} tree_t;

static uint64_t hash_key(uint32_t parent, const char* name) {
  uint64_t h = 1469598103934665603ull ^ ((uint64_t)parent * 0x9e3779b97f4a7c15ull);
  for (const char* c = name; *c; c++)
    h = (h ^ (unsigned char)*c) * 1099511628211ull;
  return h;
}

static int tree_init(tree_t* t) {
  memset(t, 0, sizeof *t);
  t->cap = 1024;
  t->v = calloc(t->cap, sizeof *t->v);
  t->nslots = 2048;
  t->slots = calloc(t->nslots, sizeof *t->slots);
  if (t->v == NULL || t->slots == NULL) return ENOMEM;
  t->v[0].name = "all";
  t->n = 1;
  return 0;
}

static void tree_free(tree_t* t) {
  free(t->v);
  free(t->slots);
}

/* The child of parent named name, created when missing; 0 when memory runs out. */
static uint32_t child(tree_t* t, uint32_t parent, const char* name) {
  size_t mask = t->nslots - 1;
  size_t j = hash_key(parent, name) & mask;
  for (; t->slots[j] != 0; j = (j + 1) & mask) {
    const node_t* c = &t->v[t->slots[j]];
    if (c->parent == parent && strcmp(c->name, name) == 0) return t->slots[j];
  }
  if (t->n >= UINT32_MAX - 1) return 0;
  if (t->n == t->cap) {
    node_t* v = realloc(t->v, 2 * t->cap * sizeof *v);
    if (v == NULL) return 0;
    t->v = v;
    t->cap *= 2;
  }
  uint32_t id = (uint32_t)t->n++;
  t->v[id] = (node_t){name, 0, parent, 0, t->v[parent].first};
  t->v[parent].first = id;
  t->slots[j] = id;
  if (2 * t->n > t->nslots) { /* grow and rehash */
    size_t ns = t->nslots * 2;
    uint32_t* slots = calloc(ns, sizeof *slots);
    if (slots == NULL) return 0;
    for (uint32_t i = 1; i < t->n; i++) {
      size_t k = hash_key(t->v[i].parent, t->v[i].name) & (ns - 1);
      while (slots[k] != 0)
        k = (k + 1) & (ns - 1);
      slots[k] = i;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = ns;
  }
  return id;
}

static const node_t* cmp_base;
static int cmp_node(const void* a, const void* b) {
  return strcmp(cmp_base[*(const uint32_t*)a].name, cmp_base[*(const uint32_t*)b].name);
}

/* A JSON string, safe inside <script>: '<', '>' and '&' are escaped too. */
static void json_str(FILE* f, const char* s) {
  fputc('"', f);
  for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&' || *p >= 0x7f)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

/* The tree as nested {"n":name,"v":value,"c":[children sorted by name]}, depth first with an
 * explicit stack. */
static int json_tree(FILE* f, const tree_t* t) {
  typedef struct frame_s {
    uint32_t* kids;
    size_t n, next;
  } frame_t;
  size_t cap = 64, depth = 0;
  frame_t* st = malloc(cap * sizeof *st);
  if (st == NULL) return ENOMEM;
  int err = 0;
  uint32_t cur = 0;
  for (;;) {
    /* Open cur and push its children. */
    const node_t* n = &t->v[cur];
    fputs("{\"n\":", f);
    json_str(f, n->name);
    fprintf(f, ",\"v\":%" PRId64, n->value);
    size_t nk = 0;
    for (uint32_t k = n->first; k != 0; k = t->v[k].next)
      nk++;
    if (nk > 0) {
      uint32_t* kids = malloc(nk * sizeof *kids);
      frame_t* grown = depth == cap ? realloc(st, 2 * cap * sizeof *st) : st;
      if (kids == NULL || grown == NULL) {
        free(kids);
        err = ENOMEM;
        break;
      }
      if (depth == cap) cap *= 2;
      st = grown;
      size_t i = 0;
      for (uint32_t k = n->first; k != 0; k = t->v[k].next)
        kids[i++] = k;
      cmp_base = t->v;
      qsort(kids, nk, sizeof *kids, cmp_node);
      fputs(",\"c\":[", f);
      st[depth++] = (frame_t){kids, nk, 1};
      cur = kids[0];
      continue;
    }
    fputc('}', f);
    /* Close finished levels, then go to the next sibling. */
    while (depth > 0 && st[depth - 1].next == st[depth - 1].n) {
      free(st[--depth].kids);
      fputs("]}", f);
    }
    if (depth == 0) break;
    fputc(',', f);
    cur = st[depth - 1].kids[st[depth - 1].next++];
  }
  while (depth > 0)
    free(st[--depth].kids);
  free(st);
  return err;
}

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width\">\n<title>";

static const char page_style[] =
    "</title>\n<style>\n"
    "body{font:13px sans-serif;margin:12px;color:#222;background:#fff}\n"
    "h1{font-size:16px;margin:0 0 6px}\n"
    "#bar{display:flex;gap:12px;align-items:center;margin-bottom:6px}\n"
    "#search{width:260px}\n"
    "#status{height:18px;margin:4px 0;white-space:nowrap;overflow:hidden}\n"
    "#chart{position:relative;width:100%;overflow:hidden}\n"
    ".f{position:absolute;height:17px;line-height:17px;font-size:11px;overflow:hidden;"
    "white-space:nowrap;box-sizing:border-box;border:1px solid #fff;padding-left:3px;"
    "cursor:pointer}\n"
    ".f.m{background:#e040e0!important}\n"
    ".f.a{opacity:.6}\n"
    "#error{color:#b00}\n"
    "#recon pre{margin:4px 0;font-size:12px}\n"
    "</style></head><body>\n"
    "<script>window.onerror=function(m){var e=document.getElementById('error');"
    "if(e)e.textContent='the flame graph could not be drawn: '+m};</script>\n";

static const char page_script[] =
    "<script>\n"
    "'use strict';\n"
    "(function(){\n"
    "var root=DATA,zoom=root,chart=document.getElementById('chart'),\n"
    "status=document.getElementById('status'),search=document.getElementById('search'),\n"
    "found=document.getElementById('found'),H=18,re=null;\n"
    "function fmt(v){var u=['B','KiB','MiB','GiB','TiB'],i=0,x=v;"
    "while(Math.abs(x)>=1024&&i<4){x/=1024;i++}return (i?x.toFixed(1):String(x))+' '+u[i]}\n"
    "function pct(v){return root.v>0?(100*v/root.v).toFixed(2)+'%':'0%'}\n"
    "function link(n,p,d){n.p=p;n.d=d;(n.c||[]).forEach(function(k){link(k,n,d+1)})}\n"
    "link(root,null,0);\n"
    "function color(s){var h=0;for(var i=0;i<s.length;i++)h=(h*31+s.charCodeAt(i))>>>0;"
    "return 'hsl('+(10+h%45)+','+(60+h%30)+'%,'+(62+(h>>8)%16)+'%)'}\n"
    "function matches(n){return re!==null&&re.test(n.n)}\n"
    "function box(n,x,w,y,anc){var e=document.createElement('div');e.className='f'+"
    "(matches(n)?' m':'')+(anc?' a':'');\n"
    "e.style.left=x+'px';e.style.width=w+'px';e.style.top=y+'px';"
    "e.style.background=color(n.n);e.textContent=n.n;\n"
    "var tip=n.n+' \\u2014 '+fmt(n.v)+' ('+pct(n.v)+')';e.title=tip;\n"
    "e.onmouseover=function(){status.textContent=tip};\n"
    "e.onclick=function(ev){ev.stopPropagation();zoom=n;draw()};chart.appendChild(e)}\n"
    "function depth(n){var d=0;(n.c||[]).forEach(function(k){d=Math.max(d,depth(k))});"
    "return d+1}\n"
    "function draw(){chart.textContent='';var W=chart.clientWidth||1000;\n"
    "var anc=[];for(var a=zoom.p;a;a=a.p)anc.unshift(a);\n"
    "anc.forEach(function(a,i){box(a,0,W,i*H,true)});\n"
    "var top=anc.length;chart.style.height=((top+depth(zoom))*H+4)+'px';\n"
    "(function lay(n,x,w,d){if(w<1)return;box(n,x,w,d*H,false);var cx=x;"
    "(n.c||[]).forEach(function(k){var kw=zoom.v>0?W*k.v/zoom.v:0;lay(k,cx,kw,d+1);cx+=kw})})"
    "(zoom,0,W,top);\n"
    "var m=0;if(re!==null){(function walk(n,on){var hit=!on&&matches(n);if(hit)m+=n.v;"
    "(n.c||[]).forEach(function(k){walk(k,on||hit)})})(root,false);"
    "found.textContent='matched: '+fmt(m)+' ('+pct(m)+')'}else found.textContent='';}\n"
    "search.oninput=function(){var s=search.value;re=null;if(s){try{re=new RegExp(s,'i')}"
    "catch(e){re=new RegExp(s.replace(/[.*+?^${}()|[\\]\\\\]/g,'\\\\$&'),'i')}}draw()};\n"
    "function hash(){var h=[];if(search.value)h.push('search='+encodeURIComponent(search.value));"
    "if(zoom!==root)h.push('zoom='+encodeURIComponent(zoom.n));"
    "history.replaceState(null,'',h.length?'#'+h.join('&'):location.pathname)}\n"
    "document.getElementById('reset').onclick=function(){zoom=root;draw();hash()};\n"
    "chart.addEventListener('click',function(){hash()});search.addEventListener('input',hash);\n"
    "location.hash.slice(1).split('&').forEach(function(kv){var i=kv.indexOf('=');if(i<0)return;"
    "var k=kv.slice(0,i),v=decodeURIComponent(kv.slice(i+1));"
    "if(k==='search'){search.value=v;search.oninput()}"
    "if(k==='zoom'){var best=null;(function walk(n){if(n.n===v&&(!best||n.v>best.v))best=n;"
    "(n.c||[]).forEach(walk)})(root);if(best)zoom=best}});\n"
    "window.onresize=draw;draw();\n"
    "})();\n"
    "</script>\n</body></html>\n";

static void html_text(FILE* f, const char* s) {
  for (; *s; s++) {
    if (*s == '<')
      fputs("&lt;", f);
    else if (*s == '>')
      fputs("&gt;", f);
    else if (*s == '&')
      fputs("&amp;", f);
    else if (*s == '"')
      fputs("&quot;", f);
    else
      fputc(*s, f);
  }
}

int mprof__write_flame(FILE* f, const mprof_stacks_t* s, mprof_metric_t m, const char* title) {
  int vi = m == MPROF_ALLOC ? s->alloc_space : s->inuse_space;
  if (vi < 0) return EINVAL;
  tree_t tree;
  int err = tree_init(&tree);
  for (size_t i = 0; i < s->n && err == 0; i++) {
    const mprof_stack_t* st = &s->stacks[i];
    int64_t v = st->values[vi];
    if (v <= 0) continue;
    tree.v[0].value += v;
    uint32_t n = 0;
    for (size_t j = st->n, d = 0; j-- > 0; d++) {
      const char* name = st->frames[j].func;
      if (d + 1 == MPROF_FLAME_MAX_DEPTH && j > 0) {
        /* The rest of a very deep stack, as one box. */
        name = "[deeper frames folded]";
        j = 0;
      }
      n = child(&tree, n, name);
      if (n == 0) {
        err = ENOMEM;
        break;
      }
      tree.v[n].value += v;
    }
  }
  if (err == 0) {
    char total[32];
    mprof__fmt_bytes(total, sizeof total, tree.v[0].value, false);
    fputs(page_head, f);
    html_text(f, title);
    fputs(page_style, f);
    fputs("<h1>", f);
    html_text(f, title);
    fprintf(f, "</h1>\n<div>%s, total %s (estimated from samples)</div>\n",
            m == MPROF_ALLOC ? "bytes allocated over the run" : "bytes in use", total);
    /* The reconciliation block, as the text reports print it. */
    char* recon = NULL;
    size_t recon_len = 0;
    FILE* mf = open_memstream(&recon, &recon_len);
    if (mf != NULL) {
      mprof__print_recon(mf, s->prof, false);
      fclose(mf);
      fputs("<details id=\"recon\"><summary>reconciliation with the allocator and RSS</summary>"
            "<pre>",
            f);
      html_text(f, recon != NULL ? recon : "");
      fputs("</pre></details>\n", f);
    }
    free(recon);
    fputs("<div id=\"bar\"><input id=\"search\" type=\"search\" placeholder=\"search "
          "functions (regular expression)\"><button id=\"reset\">reset zoom</button>"
          "<span id=\"found\"></span></div>\n<div id=\"status\">hover over a box for its "
          "bytes; click to zoom</div>\n<div id=\"error\"></div>\n<div "
          "id=\"chart\"></div>\n<script>\nvar DATA=",
          f);
    err = json_tree(f, &tree);
    fputs(";\n</script>\n", f);
    fputs(page_script, f);
  }
  tree_free(&tree);
  if (err == 0 && ferror(f)) err = EIO;
  return err;
}
