/* File-system helpers shared by the layers that create their own directories. */
#ifndef TB_CORE_FS_H
#define TB_CORE_FS_H

/* mkdir -p for |path|, or for its directory part when |is_dir| is 0. Existing directories are
 * fine; other failures surface when the caller opens a file there, with the OS's reason. */
void tb_mkdirs(const char *path, int is_dir);

#endif
