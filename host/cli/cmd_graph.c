/* orderflow graph: a pipeline's topics and stages as Graphviz DOT or Mermaid. */
#include "cli.h"
#include "pipeline.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

/* Names come from YAML, so they are escaped for each output language. */
static void dot_esc(const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        putchar(*s);
    }
}

static void dot_str(const char *s)
{
    putchar('"');
    dot_esc(s);
    putchar('"');
}

static void mermaid_str(const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '"':
            fputs("#quot;", stdout);
            break;
        case '<':
            fputs("#lt;", stdout);
            break;
        case '>':
            fputs("#gt;", stdout);
            break;
        default:
            putchar(*s);
        }
    }
}

static size_t topic_index(const of_pipeline *p, const char *name)
{
    for (size_t i = 0; i < p->n_topics; i++)
        if (strcmp(p->topics[i].name, name) == 0)
            return i;
    return (size_t)-1;
}

static void print_dot(const of_pipeline *p)
{
    printf("digraph ");
    dot_str(p->name);
    printf(" {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for (size_t i = 0; i < p->n_topics; i++) {
        printf("  t%zu [shape=ellipse, label=", i);
        dot_str(p->topics[i].name);
        printf("%s];\n", p->topics[i].external ? ", style=dashed" : "");
    }
    for (size_t i = 0; i < p->n_stages; i++) {
        const of_stage_def *s = &p->stages[i];
        printf("  s%zu [shape=box, style=rounded, label=\"", i);
        dot_esc(s->name);
        printf("\\n(");
        dot_esc(s->plugin_name);
        printf(" x%d)\"];\n", s->concurrency);
        for (size_t k = 0; k < s->n_inputs; k++)
            printf("  t%zu -> s%zu;\n", topic_index(p, s->inputs[k]), i);
        for (size_t k = 0; k < s->n_outputs; k++) {
            printf("  s%zu -> t%zu [label=", i, topic_index(p, s->outputs[k].topic));
            dot_str(s->outputs[k].output);
            printf("];\n");
        }
        if (s->dead_letter)
            printf("  s%zu -> t%zu [style=dashed, color=red, label=\"dead letter\"];\n", i,
                   topic_index(p, s->dead_letter));
    }
    printf("}\n");
}

static void print_mermaid(const of_pipeline *p)
{
    printf("flowchart LR\n");
    for (size_t i = 0; i < p->n_topics; i++) {
        printf("  t%zu([\"", i);
        mermaid_str(p->topics[i].name);
        printf("\"])\n");
    }
    for (size_t i = 0; i < p->n_stages; i++) {
        const of_stage_def *s = &p->stages[i];
        printf("  s%zu[\"", i);
        mermaid_str(s->name);
        printf("<br/>");
        mermaid_str(s->plugin_name);
        printf(" x%d\"]\n", s->concurrency);
        for (size_t k = 0; k < s->n_inputs; k++)
            printf("  t%zu --> s%zu\n", topic_index(p, s->inputs[k]), i);
        for (size_t k = 0; k < s->n_outputs; k++) {
            printf("  s%zu -- \"", i);
            mermaid_str(s->outputs[k].output);
            printf("\" --> t%zu\n", topic_index(p, s->outputs[k].topic));
        }
        if (s->dead_letter)
            printf("  s%zu -. \"dead letter\" .-> t%zu\n", i, topic_index(p, s->dead_letter));
    }
}

int of_cmd_graph(const of_cli *cli, int argc, char **argv)
{
    (void)cli;
    const char *format = "dot";
    static const struct option longopts[] = {
        {"format", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "f:", longopts, NULL)) != -1) {
        if (opt == 'f') {
            format = optarg;
        } else {
            fprintf(stderr, "usage: orderflow graph [--format dot|mermaid] FILE\n");
            return 2;
        }
    }
    if (strcmp(format, "dot") != 0 && strcmp(format, "mermaid") != 0) {
        fprintf(stderr, "orderflow graph: unknown format '%s' (expected dot or mermaid)\n", format);
        return 2;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: orderflow graph [--format dot|mermaid] FILE\n");
        return 2;
    }
    of_diag diag;
    of_diag_init(&diag);
    /* Drawing needs no plugins: the structure is all in the file. */
    of_pipeline *p = of_pipeline_load(argv[optind], NULL, &diag);
    of_diag_print(&diag, stderr);
    of_diag_free(&diag);
    if (!p)
        return 1;
    if (strcmp(format, "dot") == 0)
        print_dot(p);
    else
        print_mermaid(p);
    of_pipeline_free(p);
    return 0;
}
