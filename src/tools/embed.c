/* Build tool: turns a text file into a C string constant, so that
 * configs/default.json ships inside the binary. Usage: embed IN OUT NAME */
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s INPUT OUTPUT SYMBOL\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    FILE *out = fopen(argv[2], "wb");
    if (!out) {
        perror(argv[2]);
        fclose(in);
        return 1;
    }
    fprintf(out, "/* Generated from %s; do not edit. */\n", argv[1]);
    fprintf(out, "extern const char %s[];\nconst char %s[] = {\n", argv[3], argv[3]);
    int c, column = 0;
    while ((c = fgetc(in)) != EOF) {
        fprintf(out, "%d,", c);
        if (++column == 20) {
            fputc('\n', out);
            column = 0;
        }
    }
    fprintf(out, "0};\n");
    int failed = ferror(in) || fclose(out) != 0;
    fclose(in);
    return failed ? 1 : 0;
}
