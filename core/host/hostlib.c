/* `kalua.host`: what this executable is and what it links, and the few
 * process primitives the operations commands need: stop signals, lock
 * files and child processes.
 *
 *   host.catch_signals()        SIGTERM and SIGINT only set a flag
 *   host.stop_requested()       -> "SIGTERM" | "SIGINT" | nil
 *   host.lock(path)             -> lock | nil, "held by pid N", "LOCKED"
 *   host.spawn(argv [, opts])   -> process | nil, message
 *   host.kill(pid, signal)      -> true | nil, message
 *   host.pid(), host.executable() */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <openssl/crypto.h>
#include <yaml.h>
#include <zstd.h>

#include <lua.h>
#include <lauxlib.h>

#include "host.h"
#include "kalua_util.h"

#ifndef KALUA_KRB5_VERSION
#define KALUA_KRB5_VERSION NULL
#endif
#ifndef KALUA_EDIT_VERSION
#define KALUA_EDIT_VERSION "unknown"
#endif

struct lib_version {
  const char *name;
  const char *version;
};

/* MIT krb5 and libedit have no run-time version call: theirs are the
 * versions kalua was built against. */
static int collect_versions(struct lib_version *out, int max) {
  int n = 0;
  const char *krb5 = KALUA_KRB5_VERSION;
  if (max < 9) return 0;
  out[n++] = (struct lib_version){"kalua", KALUA_VERSION};
  out[n++] = (struct lib_version){"Lua", LUA_RELEASE};
  out[n++] = (struct lib_version){"librdkafka", rd_kafka_version_str()};
  out[n++] = (struct lib_version){"MIT krb5", krb5 ? krb5 : "not built (KALUA_WITH_GSSAPI=OFF)"};
  out[n++] = (struct lib_version){"OpenSSL", OpenSSL_version(OPENSSL_VERSION)};
  out[n++] = (struct lib_version){"zstd", ZSTD_versionString()};
  out[n++] = (struct lib_version){"libcurl", curl_version_info(CURLVERSION_NOW)->version};
  out[n++] = (struct lib_version){"libyaml", yaml_get_version_string()};
  out[n++] = (struct lib_version){"libedit", KALUA_EDIT_VERSION};
  return n;
}

void host_print_versions(void) {
  struct lib_version v[16];
  int i, n = collect_versions(v, 16);
  for (i = 0; i < n; i++) printf("%-11s %s\n", v[i].name, v[i].version);
}

static int host_versions(lua_State *L) {
  struct lib_version v[16];
  int i, n = collect_versions(v, 16);
  lua_createtable(L, 0, n);
  for (i = 0; i < n; i++) {
    lua_pushstring(L, v[i].version);
    lua_setfield(L, -2, v[i].name);
  }
  return 1;
}

static int host_command(lua_State *L) {
  const char *path = host_command_path(luaL_checkstring(L, 1));
  if (path == NULL) return 0;
  lua_pushstring(L, path);
  return 1;
}


/* Sorted names of the built-in commands (scripts/<name>.lua). */
static int host_commands(lua_State *L) {
  DIR *d = opendir(host_scripts_dir());
  struct dirent *e;
  int n = 0;
  lua_newtable(L);
  if (d == NULL) return 1;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len > 4 && e->d_name[0] != '.' && strcmp(e->d_name + len - 4, ".lua") == 0) {
      lua_pushlstring(L, e->d_name, len - 4);
      lua_rawseti(L, -2, ++n);
    }
  }
  closedir(d);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, -3);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  return 1;
}

/* host.isatty(fd) -> whether fd (0, 1, 2) is a terminal: progress lines and
 * colour only go to people, never into pipes and logs. */
static int host_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}


/* --- stop signals -----------------------------------------------------------
 *
 * A signal is delivered to the process, not to a Lua state, so the stop
 * flag is process-wide by nature: every Lua state of the process sees the
 * same request, which is what a stop means. It is the only state here, a
 * sig_atomic_t the handler writes once and Lua reads. */

static volatile sig_atomic_t stop_signal = 0;

/* Async-signal-safe: records the first stop signal and nothing else. */
static void on_stop_signal(int sig) {
  if (stop_signal == 0) stop_signal = sig;
}

static const struct {
  const char *name;
  int number;
} signal_names[] = {
  {"SIGTERM", SIGTERM}, {"SIGINT", SIGINT}, {"SIGKILL", SIGKILL}, {"SIGHUP", SIGHUP},
  {"SIGQUIT", SIGQUIT}, {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"SIGCONT", SIGCONT},
  {"SIGSTOP", SIGSTOP}, {NULL, 0},
};

static const char *signal_name(int sig) {
  int i;
  for (i = 0; signal_names[i].name; i++)
    if (signal_names[i].number == sig) return signal_names[i].name;
  return NULL;
}

/* A signal from a number, "SIGTERM" or "TERM". */
static int check_signal(lua_State *L, int idx) {
  const char *name;
  int i;
  if (lua_type(L, idx) == LUA_TNUMBER) return (int)luaL_checkinteger(L, idx);
  name = luaL_checkstring(L, idx);
  for (i = 0; signal_names[i].name; i++)
    if (strcmp(name, signal_names[i].name) == 0 || strcmp(name, signal_names[i].name + 3) == 0)
      return signal_names[i].number;
  return luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s'", name));
}

/* host.catch_signals(): from now on SIGTERM and SIGINT only set the stop
 * flag, for the program to stop at a safe point. A second SIGINT (Ctrl-C
 * twice) takes the default action; SIGTERM stays caught, since a service
 * manager and a scheduler may both send one. Child processes start with
 * the default actions again (exec resets handlers). */
static int host_catch_signals(lua_State *L) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGTERM, &sa, NULL) != 0) return luaL_error(L, "sigaction(SIGTERM): %s", strerror(errno));
  sa.sa_flags = SA_RESTART | SA_RESETHAND;
  if (sigaction(SIGINT, &sa, NULL) != 0) return luaL_error(L, "sigaction(SIGINT): %s", strerror(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* host.stop_requested() -> "SIGTERM" or "SIGINT" once one arrived, else nil. */
static int host_stop_requested(lua_State *L) {
  int sig = stop_signal;
  if (sig == 0) return 0;
  lua_pushstring(L, signal_name(sig));
  return 1;
}

/* --- lock files --------------------------------------------------------------
 *
 * flock(2) on a file: the kernel drops the lock when the last descriptor
 * of it closes, so a crash never leaves a stale lock. The holder's pid is
 * written into the file, for the message a second taker gets. */

#define LOCK_MT "kalua.host.Lock"

typedef struct {
  int fd; /* -1 once released */
} host_lock;

static host_lock *check_lock(lua_State *L, int idx) {
  host_lock *lk = luaL_checkudata(L, idx, LOCK_MT);
  if (lk->fd < 0) luaL_error(L, "lock is released");
  return lk;
}

static int write_pid(int fd, long pid) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%ld\n", pid);
  if (ftruncate(fd, 0) != 0) return -1;
  return pwrite(fd, buf, (size_t)n, 0) == n ? 0 : -1;
}

/* The pid a lock file names, or 0. */
static long read_pid(const char *path) {
  char buf[32];
  ssize_t n;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  return strtol(buf, NULL, 10);
}

/* host.lock(path) -> lock, or nil, "<path>: held by pid N", "LOCKED" when
 * another process (or another lock object) holds it. */
static int host_lock_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  host_lock *lk;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return kalua_fail(L, lua_pushfstring(L, "%s: %s", path, strerror(errno)), "ERROR");
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      long pid = read_pid(path);
      if (pid > 0) return kalua_fail(L, lua_pushfstring(L, "%s: held by pid %d", path, (int)pid), "LOCKED");
      return kalua_fail(L, lua_pushfstring(L, "%s: held by another process", path), "LOCKED");
    }
    return kalua_fail(L, lua_pushfstring(L, "%s: flock: %s", path, strerror(err)), "ERROR");
  }
  if (write_pid(fd, (long)getpid()) != 0) {
    int err = errno;
    close(fd);
    return kalua_fail(L, lua_pushfstring(L, "%s: %s", path, strerror(err)), "ERROR");
  }
  lk = lua_newuserdatauv(L, sizeof *lk, 0);
  lk->fd = fd;
  luaL_setmetatable(L, LOCK_MT);
  return 1;
}

/* lock:set_pid(pid): names another holder in the file (a child process
 * that shares the lock). */
static int lock_set_pid(lua_State *L) {
  host_lock *lk = check_lock(L, 1);
  if (write_pid(lk->fd, (long)luaL_checkinteger(L, 2)) != 0) return kalua_fail(L, strerror(errno), "ERROR");
  lua_pushboolean(L, 1);
  return 1;
}

/* lock:release() (also close, __close and __gc): closes this descriptor;
 * the lock is free once no child that inherited it holds it either. */
static int lock_release(lua_State *L) {
  host_lock *lk = luaL_checkudata(L, 1, LOCK_MT);
  if (lk->fd >= 0) close(lk->fd);
  lk->fd = -1;
  return 0;
}

static int lock_tostring(lua_State *L) {
  host_lock *lk = luaL_checkudata(L, 1, LOCK_MT);
  lua_pushfstring(L, "kalua.host.Lock (%s)", lk->fd < 0 ? "released" : "held");
  return 1;
}

static const luaL_Reg lock_methods[] = {
  {"set_pid", lock_set_pid},
  {"release", lock_release},
  {NULL, NULL}
};

/* --- child processes ---------------------------------------------------------- */

#define PROCESS_MT "kalua.host.Process"

typedef struct {
  pid_t pid;
  int reaped;
  int status; /* waitpid's, once reaped */
} host_process;

static host_process *check_process(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, PROCESS_MT);
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static void redirect(int target, const char *path, int flags) {
  int fd;
  if (path == NULL) return;
  fd = open(path, flags, 0644);
  if (fd < 0) return;
  if (fd != target) {
    dup2(fd, target);
    close(fd);
  }
}

extern char **environ;

struct spawn_plan {
  const char **argv;
  char **envp; /* NULL: the parent's environment */
  const char *out, *err, *cwd;
  int keep[16];
  int nkeep;
  int report; /* CLOEXEC pipe: errno of a failed exec */
};

static void run_child(const struct spawn_plan *plan) {
  int i, e;
  if (plan->cwd && chdir(plan->cwd) != 0) {
    e = errno;
    if (write(plan->report, &e, sizeof e) < 0) {
    }
    _exit(127);
  }
  redirect(STDIN_FILENO, "/dev/null", O_RDONLY);
  redirect(STDOUT_FILENO, plan->out, O_WRONLY | O_CREAT | O_APPEND);
  redirect(STDERR_FILENO, plan->err, O_WRONLY | O_CREAT | O_APPEND);
  for (i = 0; i < plan->nkeep; i++) fcntl(plan->keep[i], F_SETFD, 0); /* inherit the lock */
  if (plan->envp) environ = plan->envp; /* built before fork: nothing to allocate here */
  execvp(plan->argv[0], (char *const *)plan->argv);
  e = errno;
  if (write(plan->report, &e, sizeof e) < 0) {
  }
  _exit(127);
}

/* The child's environment: the parent's, with the variables of the table
 * at index env ({NAME = value}) set or replaced. The array and its strings
 * are left on the stack (a userdata and a table) for the GC to free. */
static char **spawn_environment(lua_State *L, int env) {
  size_t n = 0, i, count = 0;
  char **envp;
  int strings;
  env = lua_absindex(L, env);
  lua_newtable(L); /* keeps the NAME=value strings alive */
  strings = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, env) != 0) {
    luaL_argcheck(L, lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING, 2,
                  "opts.env maps names to strings");
    luaL_argcheck(L, strchr(lua_tostring(L, -2), '=') == NULL && lua_rawlen(L, -2) > 0, 2,
                  "opts.env: bad variable name");
    lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
    lua_rawseti(L, strings, (lua_Integer)++count);
    lua_pop(L, 1);
  }
  while (environ && environ[n]) n++;
  envp = lua_newuserdatauv(L, (n + count + 1) * sizeof *envp, 0);
  count = 0;
  for (i = 0; i < n; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    int replaced;
    lua_pushlstring(L, environ[i], len);
    replaced = lua_rawget(L, env) != LUA_TNIL;
    lua_pop(L, 1);
    if (!replaced) envp[count++] = environ[i];
  }
  for (i = 1; i <= lua_rawlen(L, strings); i++) {
    lua_rawgeti(L, strings, (lua_Integer)i);
    envp[count++] = (char *)lua_tostring(L, -1); /* anchored in strings */
    lua_pop(L, 1);
  }
  envp[count] = NULL;
  return envp;
}

/* host.spawn(argv [, opts]) -> process, or nil, message. argv[1] is the
 * program (found on PATH when it has no '/'). opts.stdout / opts.stderr
 * append the child's output to a file (default: inherited); opts.cwd is
 * its working directory; opts.env ({NAME = value}) sets variables in its
 * environment (the rest is inherited); opts.keep is
 * a list of locks the child inherits, so they stay held until it exits
 * too. stdin is /dev/null. */
static int host_spawn(lua_State *L) {
  struct spawn_plan plan;
  lua_Integer i, n;
  int pipefd[2], e = 0;
  ssize_t got;
  pid_t pid;
  host_process *proc;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = luaL_len(L, 1);
  luaL_argcheck(L, n >= 1, 1, "argv is empty");
  memset(&plan, 0, sizeof plan);
  plan.argv = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *plan.argv, 0); /* freed by the GC */
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    plan.argv[i - 1] = luaL_checkstring(L, -1); /* argv stays on the stack at index 1 */
    lua_pop(L, 1);
  }
  plan.argv[n] = NULL;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "stdout");
    plan.out = lua_tostring(L, -1); /* strings stay alive in opts */
    lua_getfield(L, 2, "stderr");
    plan.err = lua_tostring(L, -1);
    lua_getfield(L, 2, "cwd");
    plan.cwd = lua_tostring(L, -1);
    lua_pop(L, 3);
    if (lua_getfield(L, 2, "keep") == LUA_TTABLE) {
      lua_Integer k, nk = luaL_len(L, -1);
      luaL_argcheck(L, nk <= 16, 2, "at most 16 locks in opts.keep");
      for (k = 1; k <= nk; k++) {
        lua_rawgeti(L, -1, k);
        plan.keep[plan.nkeep++] = check_lock(L, -1)->fd;
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 2, "env") == LUA_TTABLE)
      plan.envp = spawn_environment(L, -1); /* the table, its strings and the array stay on the stack */
    else
      lua_pop(L, 1);
  }
  if (pipe(pipefd) != 0) return kalua_fail(L, strerror(errno), "ERROR");
  fcntl(pipefd[0], F_SETFD, FD_CLOEXEC);
  fcntl(pipefd[1], F_SETFD, FD_CLOEXEC);
  plan.report = pipefd[1];
  fflush(NULL); /* no buffered output written twice */
  pid = fork();
  if (pid < 0) {
    e = errno;
    close(pipefd[0]);
    close(pipefd[1]);
    return kalua_fail(L, lua_pushfstring(L, "fork: %s", strerror(e)), "ERROR");
  }
  if (pid == 0) run_child(&plan);
  close(pipefd[1]);
  do got = read(pipefd[0], &e, sizeof e);
  while (got < 0 && errno == EINTR);
  close(pipefd[0]);
  if (got == (ssize_t)sizeof e) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    if (plan.cwd && e == ENOENT) /* chdir or exec: say which could be missing */
      return kalua_fail(L, lua_pushfstring(L, "cannot run %s in %s: %s", plan.argv[0], plan.cwd, strerror(e)),
                        "ERROR");
    return kalua_fail(L, lua_pushfstring(L, "cannot run %s: %s", plan.argv[0], strerror(e)), "ERROR");
  }
  proc = lua_newuserdatauv(L, sizeof *proc, 0);
  proc->pid = pid;
  proc->reaped = 0;
  proc->status = 0;
  luaL_setmetatable(L, PROCESS_MT);
  return 1;
}

/* Reaps the child if it has exited; blocks when block is set. */
static int process_reap(host_process *proc, int block) {
  int st;
  pid_t r;
  if (proc->reaped) return 1;
  do r = waitpid(proc->pid, &st, block ? 0 : WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == proc->pid) {
    proc->reaped = 1;
    proc->status = st;
  } else if (r < 0) { /* not our child any more: nothing to wait for */
    proc->reaped = 1;
    proc->status = 0;
  }
  return proc->reaped;
}

/* process:wait([timeout]) -> "exit", code | "signal", number, name; nil
 * when it is still running after timeout seconds (no timeout: waits). */
static int process_wait(lua_State *L) {
  host_process *proc = check_process(L, 1);
  lua_Number timeout = luaL_optnumber(L, 2, -1);
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (!process_reap(proc, timeout < 0)) {
    struct timespec pause = {0, 10 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((lua_Number)(now.tv_sec - start.tv_sec) + (lua_Number)(now.tv_nsec - start.tv_nsec) / 1e9 >= timeout)
      return 0;
    nanosleep(&pause, NULL);
  }
  if (WIFSIGNALED(proc->status)) {
    int sig = WTERMSIG(proc->status);
    const char *name = signal_name(sig);
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, sig);
    if (name) lua_pushstring(L, name);
    else lua_pushfstring(L, "signal %d", sig);
    return 3;
  }
  lua_pushliteral(L, "exit");
  lua_pushinteger(L, WIFEXITED(proc->status) ? WEXITSTATUS(proc->status) : 0);
  return 2;
}

/* process:kill(signal) -> true, or nil, message (e.g. it already exited). */
static int process_kill(lua_State *L) {
  host_process *proc = check_process(L, 1);
  int sig = check_signal(L, 2);
  if (proc->reaped || process_reap(proc, 0)) return kalua_fail(L, "the process has exited", "EXITED");
  if (kill(proc->pid, sig) != 0) return kalua_fail(L, strerror(errno), "ERROR");
  lua_pushboolean(L, 1);
  return 1;
}

static int process_pid(lua_State *L) {
  lua_pushinteger(L, check_process(L, 1)->pid);
  return 1;
}

/* __gc: reaps an exited child; a running one is left to run. */
static int process_gc(lua_State *L) {
  process_reap(check_process(L, 1), 0);
  return 0;
}

static int process_tostring(lua_State *L) {
  host_process *proc = check_process(L, 1);
  lua_pushfstring(L, "kalua.host.Process (pid %d%s)", (int)proc->pid, proc->reaped ? ", exited" : "");
  return 1;
}

static const luaL_Reg process_methods[] = {
  {"wait", process_wait},
  {"kill", process_kill},
  {"pid", process_pid},
  {NULL, NULL}
};

/* host.kill(pid, signal) -> true, or nil, message, name ("NO_PROCESS",
 * "ERROR"). Signal 0 asks whether the process exists. */
static int host_kill(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int sig = check_signal(L, 2);
  luaL_argcheck(L, pid > 0, 1, "pid must be positive");
  if (kill(pid, sig) != 0) {
    int e = errno;
    return kalua_fail(L, lua_pushfstring(L, "kill %d: %s", (int)pid, strerror(e)), e == ESRCH ? "NO_PROCESS" : "ERROR");
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int host_pid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

/* host.executable() -> the path of this kalua binary (to run commands as
 * child processes with the same build). */
static int host_executable(lua_State *L) {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return kalua_fail(L, strerror(errno), "ERROR");
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

static const luaL_Reg host_funcs[] = {
  {"isatty", host_isatty},
  {"catch_signals", host_catch_signals},
  {"stop_requested", host_stop_requested},
  {"lock", host_lock_open},
  {"spawn", host_spawn},
  {"kill", host_kill},
  {"pid", host_pid},
  {"executable", host_executable},
  {"commands", host_commands},
  {"versions", host_versions},
  {"command_path", host_command},
  {NULL, NULL}
};

int luaopen_kalua_host(lua_State *L) {
  kalua_newtype(L, LOCK_MT, lock_methods, lock_release, lock_tostring);
  if (luaL_newmetatable(L, PROCESS_MT)) {
    lua_pushcfunction(L, process_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, process_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, process_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, host_funcs);
  lua_pushstring(L, KALUA_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, host_scripts_dir());
  lua_setfield(L, -2, "scripts_dir");
  return 1;
}
