#!/usr/bin/env bash
# Packages one published MP4 as HLS next to it, for ringcast's --on-publish:
#
#   ringcast --ingest /uploads/ --on-publish '/uploads/*.mp4=tools/package-hls.sh'
#
# ringcast runs it with the published file's absolute path as its one
# argument (no shell, stdin /dev/null); a non-zero exit marks the job failed
# and the tail of stderr is logged. By hand: tools/package-hls.sh /abs/dir/NAME.mp4
#
# Layout, in the MP4's directory:
#
#   NAME.mp4            the source, untouched
#   NAME/master.m3u8    the master playlist: both renditions
#   NAME/v0/index.m3u8  360p, about 800 kbit/s; init_0.mp4, seg000.m4s... beside it
#   NAME/v1/index.m3u8  720p, about 2500 kbit/s
#
# H.264 (libx264) plus AAC when the source has audio, fMP4 segments of about
# 2 s, keyframes at the same instants in both renditions so a player can
# switch at any segment boundary, VOD playlists.
#
# Publishing is a rename: everything is built in the hidden .NAME.packaging.PID
# (ringcast never serves dot-names) and renamed to NAME when complete, so a
# client sees the old package or the new one, never half of one. Any failure
# removes the temporary directory. A run killed by SIGKILL (--job-timeout)
# cannot clean up; the next run for the same NAME removes what it left. (Its
# ffmpeg, a child, runs on unless the whole process group is killed.)
#
# Exit codes: 0 published, 1 packaging failed, 2 bad argument.

# -E: the ERR trap also sees failures inside functions.
set -Eeuo pipefail
shopt -s inherit_errexit

readonly SEGMENT_SECONDS=2

# height:video bitrate:maxrate:bufsize, one per rendition (v0, v1, ...).
readonly RENDITIONS=(
  "360:800k:856k:1200k"
  "720:2500k:2675k:3750k"
)

me=package-hls
src=""        # the argument, once checked
tmp=""        # the hidden directory being built; removed unless published
aside=""      # the previous package, renamed out of the way; removed at exit
failure=""    # what went wrong, said in one line at exit
encoder=""    # ffmpeg's pid while it runs, so a signal can stop it too

refuse() {
  echo "$me: $*" >&2
  exit 2
}

fail() {
  failure=$*
  exit 1
}

# The first failing command, for the one-line message (its own stderr,
# ffmpeg's say, comes before that line). In `x=$(tool ...)` it names tool.
note_failure() {
  local status=$1 command=$2 line=$3
  command=${command#*=\$(}
  failure=${failure:-"${command%% *} exited $status (line $line)"}
}

# On SIGTERM/SIGINT/SIGHUP: stops ffmpeg (bash runs this trap at once
# because ffmpeg is awaited with `wait`, not run in the foreground).
stop() {
  if [ -n "$encoder" ]; then
    kill -TERM "$encoder" 2>/dev/null || true
    wait "$encoder" || true
  fi
  fail "killed by $1"
}

# Removes whatever this run left that is not the published package, and
# says why a failed run failed.
on_exit() {
  local status=$?
  cd /
  if [ -n "$tmp" ]; then rm -rf -- "$tmp"; fi
  if [ -n "$aside" ]; then rm -rf -- "$aside"; fi
  if [ "$status" -ne 0 ] && [ -n "$failure" ]; then
    echo "$me: packaging $src failed: $failure" >&2
  fi
}

# Refuses anything but one absolute path to a regular *.mp4 file.
check_argument() {
  [ "$#" -eq 1 ] || refuse "usage: $me /abs/path/NAME.mp4 (got $# arguments)"
  local path=$1 base
  [[ $path == /* ]] || refuse "not an absolute path: $path"
  [[ ${path,,} == *.mp4 ]] || refuse "not an .mp4 file: $path"
  [ -f "$path" ] || refuse "not a regular file: $path"
  base=$(basename -- "$path")
  [ "${#base}" -gt 4 ] || refuse "no name before .mp4: $path"
}

# Sets audio to "yes" if the source has an audio stream, "no" if not.
probe_audio() {
  local streams
  streams=$(ffprobe -v error -select_streams a -show_entries stream=index -of csv=p=0 "file:$1")
  if [ -n "$streams" ]; then audio=yes; else audio=no; fi
}

# Removes temporary directories of earlier runs for the same name whose
# process is gone (killed before its trap could run).
remove_stale() {
  local dir=$1 name=$2 stale pid
  for stale in "$dir/.$name.packaging."* "$dir/.$name.old."*; do
    [ -d "$stale" ] || continue
    pid=${stale##*.}
    if [[ $pid =~ ^[0-9]+$ ]] && [ ! -d "/proc/$pid" ]; then rm -rf -- "$stale"; fi
  done
}

# Runs ffmpeg in the current directory (the temporary one): relative output
# names keep any '%' in the real path away from the muxer's name templates.
encode() {
  local src=$1 audio=$2
  local count=${#RENDITIONS[@]}
  local split="[0:v]split=$count" scales="" maps=() rates=() streams=()
  local i height rate maxrate bufsize
  for i in "${!RENDITIONS[@]}"; do
    IFS=: read -r height rate maxrate bufsize <<<"${RENDITIONS[$i]}"
    split+="[in$i]"
    # -2: keep the aspect ratio with an even width, as H.264 4:2:0 needs.
    scales+=";[in$i]scale=-2:$height[out$i]"
    maps+=(-map "[out$i]")
    rates+=("-b:v:$i" "$rate" "-maxrate:v:$i" "$maxrate" "-bufsize:v:$i" "$bufsize")
    if [ "$audio" = yes ]; then
      maps+=(-map 0:a:0)
      streams+=("v:$i,a:$i")
    else
      streams+=("v:$i")
    fi
  done
  local audio_codec=()
  if [ "$audio" = yes ]; then audio_codec=(-c:a aac -b:a 128k -ac 2); fi

  # Keyframes every SEGMENT_SECONDS of source time, forced in every
  # rendition alike, and no scene-cut ones: the segments line up.
  ffmpeg -nostdin -hide_banner -loglevel error \
    -i "file:$src" \
    -filter_complex "$split$scales" \
    "${maps[@]}" \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p "${rates[@]}" \
    -force_key_frames "expr:gte(t,n_forced*$SEGMENT_SECONDS)" -sc_threshold 0 \
    "${audio_codec[@]}" \
    -f hls -hls_time "$SEGMENT_SECONDS" -hls_playlist_type vod \
    -hls_segment_type fmp4 -hls_flags independent_segments \
    -hls_fmp4_init_filename init.mp4 \
    -hls_segment_filename 'v%v/seg%03d.m4s' \
    -master_pl_name master.m3u8 \
    -var_stream_map "${streams[*]}" \
    'v%v/index.m3u8' &
  encoder=$!
  wait "$encoder" || fail "ffmpeg exited $?"
  encoder=""
}

# Checks the package has its master and every rendition's playlist.
check_package() {
  local i
  [ -s master.m3u8 ] || fail "ffmpeg wrote no master.m3u8"
  for i in "${!RENDITIONS[@]}"; do
    [ -s "v$i/index.m3u8" ] || fail "ffmpeg wrote no v$i/index.m3u8"
  done
}

# Renames the finished package to dest; a previous one is renamed aside
# first (a rename cannot replace a non-empty directory) and removed after.
publish() {
  local built=$1 dest=$2 old=$3
  if [ -e "$dest" ]; then
    mv -T -- "$dest" "$old"
    aside=$old
  fi
  mv -T -- "$built" "$dest"
  tmp=""
}

main() {
  check_argument "$@"
  src=$1
  local dir base name audio=""
  dir=$(dirname -- "$src")
  base=$(basename -- "$src")
  name=${base:0:${#base}-4}

  trap on_exit EXIT
  trap 'note_failure $? "$BASH_COMMAND" $LINENO' ERR
  # A trapped signal leaves through the EXIT trap; an untrapped one would not.
  trap 'stop SIGTERM' TERM
  trap 'stop SIGINT' INT
  trap 'stop SIGHUP' HUP

  remove_stale "$dir" "$name"
  probe_audio "$src"
  tmp="$dir/.$name.packaging.$$"
  mkdir -- "$tmp"
  cd -- "$tmp"
  encode "$src" "$audio"
  check_package
  cd /
  publish "$tmp" "$dir/$name" "$dir/.$name.old.$$"
}

main "$@"
