/* Compact JSON text written straight into a buffer, for the business plugins' outputs and status
 * messages. Why not a jansson document and json_dumps: those are small flat objects made for
 * every event, and a document costs an allocation for the object, one for each value and several
 * for the text (the stages' JSON was half of the daemon's allocations, bench/RESULTS.md step 39);
 * the writer fills a buffer inside itself and allocates only when the text outgrows it. Its text
 * is what json_dumps(doc, JSON_COMPACT) makes of the same members in the same order (strings
 * escaped alike; tests/unit/test_ofp_json.c compares them), so readers see no difference.
 *
 *   ofp_jw w;
 *   ofp_jw_init(&w);
 *   ofp_jw_object(&w, NULL);
 *   ofp_jw_str(&w, "order_id", id);
 *   ofp_jw_int(&w, "seq", 3);
 *   ofp_jw_end(&w);
 *   size_t len;
 *   const char *text = ofp_jw_text(&w, &len);   // NULL: see ofp_jw_text
 *   ...
 *   ofp_jw_free(&w);
 *
 * Members are written in the order of the calls, with no check for repeated keys (the caller
 * writes each key once). Pure, compiled into each plugin that uses it. */
#ifndef OFP_JSON_H
#define OFP_JSON_H

#include <stddef.h>
#include <stdint.h>

#define OFP_JW_DEPTH  16  /* objects and arrays open at once */
#define OFP_JW_INLINE 512 /* bytes of text before the writer allocates */

typedef struct ofp_jw {
    char *p; /* the text so far: inline_buf, or the heap once it outgrew it */
    size_t len, cap;
    int failed; /* out of memory, a string not UTF-8, or a call out of place */
    unsigned depth;
    unsigned char members[OFP_JW_DEPTH]; /* has the open container a member yet */
    unsigned char is_object[OFP_JW_DEPTH];
    char inline_buf[OFP_JW_INLINE];
} ofp_jw;

/* The writer is used where it was initialised (it points into itself): not copied or moved. */
void ofp_jw_init(ofp_jw *w);
/* Frees what the writer allocated (and the text ofp_jw_text returned). */
void ofp_jw_free(ofp_jw *w);

/* Each writes one value: a member named key inside an object, an element (key NULL) inside an
 * array, or the whole text (key NULL) at the top. A key in an array, no key in an object, or a
 * second value at the top fails the writer. Strings are NUL-terminated UTF-8 (the _n forms take a
 * length and may hold NUL, written as \u0000); text that is not UTF-8 fails the writer, as
 * jansson refuses it. ofp_jw_str with s NULL writes null. */
void ofp_jw_object(ofp_jw *w, const char *key);
void ofp_jw_array(ofp_jw *w, const char *key);
void ofp_jw_end(ofp_jw *w); /* closes the innermost open object or array */
void ofp_jw_str(ofp_jw *w, const char *key, const char *s);
void ofp_jw_strn(ofp_jw *w, const char *key, const char *s, size_t len);
void ofp_jw_int(ofp_jw *w, const char *key, int64_t v);
void ofp_jw_bool(ofp_jw *w, const char *key, int v);
void ofp_jw_null(ofp_jw *w, const char *key);

/* The text, NUL-terminated, owned by the writer until ofp_jw_free; its length in *len (may be
 * NULL). NULL when the writer failed (the reason does not matter to a caller: out of memory
 * is the only one valid input can meet) or when an object or array is still open. */
const char *ofp_jw_text(ofp_jw *w, size_t *len);

#endif
