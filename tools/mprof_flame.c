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

typedef struct node_s {
  const char* name;
  int64_t value;
  struct node_s** kids;
  size_t nkids, cap;
} node_t;

static node_t* child(node_t* n, const char* name) {
  for (size_t i = 0; i < n->nkids; i++)
    if (strcmp(n->kids[i]->name, name) == 0) return n->kids[i];
  if (n->nkids == n->cap) {
    size_t cap = n->cap ? n->cap * 2 : 4;
    node_t** k = realloc(n->kids, cap * sizeof *k);
    if (k == NULL) return NULL;
    n->kids = k;
    n->cap = cap;
  }
  node_t* c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->name = name;
  n->kids[n->nkids++] = c;
  return c;
}

static void free_tree(node_t* n) {
  for (size_t i = 0; i < n->nkids; i++)
    free_tree(n->kids[i]);
  free(n->kids);
  free(n);
}

static int cmp_node(const void* a, const void* b) {
  const node_t* x = *(node_t* const*)a;
  const node_t* y = *(node_t* const*)b;
  return strcmp(x->name, y->name);
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

static void json_node(FILE* f, node_t* n) {
  fputs("{\"n\":", f);
  json_str(f, n->name);
  fprintf(f, ",\"v\":%" PRId64, n->value);
  if (n->nkids > 0) {
    qsort(n->kids, n->nkids, sizeof *n->kids, cmp_node);
    fputs(",\"c\":[", f);
    for (size_t i = 0; i < n->nkids; i++) {
      if (i > 0) fputc(',', f);
      json_node(f, n->kids[i]);
    }
    fputc(']', f);
  }
  fputc('}', f);
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
  node_t* root = calloc(1, sizeof *root);
  if (root == NULL) return ENOMEM;
  root->name = "all";
  int err = 0;
  for (size_t i = 0; i < s->n && err == 0; i++) {
    const mprof_stack_t* st = &s->stacks[i];
    int64_t v = st->values[vi];
    if (v <= 0) continue;
    root->value += v;
    node_t* n = root;
    for (size_t j = st->n; j-- > 0;) {
      n = child(n, st->frames[j].func);
      if (n == NULL) {
        err = ENOMEM;
        break;
      }
      n->value += v;
    }
  }
  if (err == 0) {
    char total[32];
    mprof__fmt_bytes(total, sizeof total, root->value, false);
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
    json_node(f, root);
    fputs(";\n</script>\n", f);
    fputs(page_script, f);
  }
  free_tree(root);
  if (err == 0 && ferror(f)) err = EIO;
  return err;
}
