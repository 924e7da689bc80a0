-- Shell completion (completions/): command names, subcommands, a command's
-- --flags and their values, all read from kalua when TAB is pressed. bash is
-- driven through its completion function; zsh through a real interactive
-- zsh on a pseudo-terminal (zsh/zpty), as a person would type.
local proc = require "proc"

local function have(tool)
  local p = io.popen("command -v " .. tool .. " 2>/dev/null")
  local found = p:read("l")
  p:close()
  return found ~= nil
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local p = io.popen("pwd")
  local cwd = p:read("l")
  p:close()
  return cwd .. "/" .. path
end

describe("bash completion #noasan", function()
  -- COMPREPLY for a command line; words[1] is the kalua binary under test.
  local function complete(...)
    local words = { proc.kalua(), ... }
    local r = proc.run({ "bash", "-c", [[
      source completions/kalua.bash
      COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
      _kalua
      printf '%s\n' "${COMPREPLY[@]}"]], "bash", table.unpack(words) })
    assert.are.equal(0, r.code, r.stderr)
    local out = {}
    for line in r.stdout:gmatch("[^\n]+") do out[#out + 1] = line end
    return out
  end

  it("completes command names", function()
    assert.are.same({ "backup" }, complete("ba"))
    assert.are.same({ "topics" }, complete("help", "to"))
  end)

  it("completes a command's flags from its help", function()
    assert.are.same({ "--bootstrap-servers" }, complete("topics", "--boot"))
    assert.are.same({ "--dry-run" }, complete("restore", "--dry"))
  end)

  it("completes subcommands and a flag's listed values", function()
    assert.are.same({ "create", "delete", "describe", "list" }, complete("topics", ""))
    assert.are.same({ "mechanisms", "probe" }, complete("sasl", ""))
    assert.are.same({ "SASL_PLAINTEXT", "SASL_SSL" }, complete("topics", "--security-protocol", "SASL"))
  end)

  it("completes paths after a flag that takes a file", function()
    assert.are.same({ "examples/backup.yaml" }, complete("backup", "--config", "examples/back"))
  end)
end)

describe("zsh completion #noasan", function()
  -- Types `line` and TAB into an interactive zsh with completions/ on fpath
  -- and `kalua` (the binary under test) on PATH; returns what the line
  -- became, or the screen when `want` never showed up.
  local HARNESS = [==[
zmodload zsh/zpty
setopt extendedglob
fdir=$1 line=$2 want=$3
zpty -b z 'zsh -f -i'
zpty -w z "PS1='> '; fpath=($fdir \$fpath); autoload -Uz compinit; compinit -u -D; print -r -- READY"
zpty -r z out '*READY*'
zpty -n -w z "$line"$'\t'
screen=''
for i in {1..100}; do
  while zpty -r -t z chunk 2>/dev/null; do screen+=$chunk; done
  clean=${${screen//$'\e'\[[0-9;?]#[a-zA-Z]/}//$'\r'/}
  [[ $clean == *$want* ]] && { print -r -- FOUND; zpty -d z; exit 0; }
  sleep 0.1
done
zpty -d z
print -r -- "$clean"
exit 1
]==]

  local bin, harness

  setup(function()
    if not have("zsh") then return end
    bin = proc.tmpdir()
    assert(os.execute("ln -s " .. proc.quote(absolute(proc.kalua())) .. " " .. proc.quote(bin .. "/kalua")))
    harness = bin .. "/zcomplete.zsh"
    proc.write_file(harness, HARNESS)
  end)

  teardown(function() if bin then proc.rmdir(bin) end end)

  local function check(line, want)
    if not have("zsh") then
      pending("zsh is not installed (tools/install-deps installs it): zsh completion not checked")
      return
    end
    local r = proc.run({ "zsh", "-f", harness, absolute("completions"), line, want },
      { env = { PATH = bin .. ":" .. os.getenv("PATH") } })
    assert.are.equal("FOUND\n", r.stdout, ("typing %q<TAB> never showed %q; the screen:\n%s%s"):format(line, want,
      r.stdout, r.stderr))
  end

  it("parses", function()
    if not have("zsh") then
      pending("zsh is not installed (tools/install-deps installs it): zsh completion not checked")
      return
    end
    local r = proc.run({ "zsh", "-n", "completions/_kalua" })
    assert.are.equal(0, r.code, r.stderr)
  end)

  it("completes command names", function() check("kalua ba", "kalua backup") end)
  it("completes a command's flags", function() check("kalua topics --boot", "--bootstrap-servers") end)
  it("completes subcommands", function() check("kalua sasl m", "kalua sasl mechanisms") end)
  it("completes a flag's listed values", function()
    check("kalua topics --security-protocol SASL_P", "--security-protocol SASL_PLAINTEXT")
  end)
end)
