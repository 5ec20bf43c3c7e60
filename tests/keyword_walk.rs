//! The accepted-keyword walk: every keyword the loader accepts on a task
//! (`TASK_KEYWORDS`), in `loop_control` and on a play (`PLAY_KEYS`) either
//! changes what is loaded, with a named test that proves what it does on a
//! host, or is refused at load time with file:line. A keyword added to the
//! loader without an entry here fails this test, so nothing can be accepted
//! and then ignored. Touches no host (CI runs it on its own, see .ci/run).

use std::path::Path;

use deployer::modules::registry::Registry;
use deployer::project::task::TASK_KEYWORDS;
use deployer::project::{PLAY_KEYS, load_playbook};

/// What the loader does with a keyword.
enum Fate {
    /// Refused at load time; the message contains this text.
    Refused(&'static str),
    /// Loaded into the task (the loaded task differs from the same task
    /// without it) and these tests prove its effect against real hosts.
    Runs(&'static [&'static str]),
}

use Fate::{Refused, Runs};

/// One task per keyword: `(keyword, lines of the task after `- `, fate)`.
/// The keyword's own line comes last so that removing it keeps every
/// location of the task the same.
const TASK_CASES: &[(&str, &str, Fate)] = &[
    (
        "name",
        "debug: {msg: x}\n      name: n",
        Runs(&["run_once_first_host_runs_and_the_others_share_its_result"]),
    ),
    (
        "when",
        "debug: {msg: x}\n      when: false",
        Runs(&["run_once_first_host_runs_and_the_others_share_its_result"]),
    ),
    (
        "loop",
        "debug: {msg: x}\n      loop: [1]",
        Runs(&["includes_apply_vars_loops_loop_control_and_clear_facts"]),
    ),
    (
        "with_items",
        "debug: {msg: x}\n      with_items: [1]",
        Runs(&["task_keywords_order_with_lists_check_mode_args_become_user_and_label"]),
    ),
    (
        "with_list",
        "debug: {msg: x}\n      with_list: [1]",
        Runs(&["task_keywords_order_with_lists_check_mode_args_become_user_and_label"]),
    ),
    (
        "loop_control",
        "debug: {msg: x}\n      loop: [1]\n      loop_control: {loop_var: it}",
        Runs(&["includes_apply_vars_loops_loop_control_and_clear_facts"]),
    ),
    (
        "register",
        "debug: {msg: x}\n      register: r",
        Runs(&["run_once_first_host_runs_and_the_others_share_its_result"]),
    ),
    (
        "notify",
        "debug: {msg: x}\n      notify: h",
        Runs(&["handlers_run_once_only_when_notified_by_a_change"]),
    ),
    (
        "listen",
        "debug: {msg: x}\n      listen: h",
        Refused("'listen' is not valid here"),
    ),
    (
        "changed_when",
        "debug: {msg: x}\n      changed_when: false",
        Runs(&["run_once_first_host_runs_and_the_others_share_its_result"]),
    ),
    (
        "failed_when",
        "debug: {msg: x}\n      failed_when: false",
        Runs(&["loops_register_when_and_changed_when"]),
    ),
    (
        "ignore_errors",
        "debug: {msg: x}\n      ignore_errors: true",
        Runs(&["wait_for_fail_ignore_errors_and_include_tasks"]),
    ),
    (
        "tags",
        "debug: {msg: x}\n      tags: [t]",
        Runs(&["tags_select_tasks_with_always_and_never"]),
    ),
    (
        "no_log",
        "debug: {msg: x}\n      no_log: true",
        Runs(&["vault_values_are_masked_in_json_diff_output_and_deployed_in_clear"]),
    ),
    (
        "become",
        "debug: {msg: x}\n      become: true",
        Runs(&["includes_apply_vars_loops_loop_control_and_clear_facts"]),
    ),
    (
        "become_user",
        "debug: {msg: x}\n      become_user: deploy",
        Runs(&["task_keywords_order_with_lists_check_mode_args_become_user_and_label"]),
    ),
    (
        "become_method",
        "debug: {msg: x}\n      become_method: su",
        Refused("become_method 'su' is not supported"),
    ),
    (
        "check_mode",
        "debug: {msg: x}\n      check_mode: true",
        Runs(&["task_keywords_order_with_lists_check_mode_args_become_user_and_label"]),
    ),
    (
        "diff",
        "debug: {msg: x}\n      diff: false",
        Runs(&["diff_false_on_a_block_hides_the_secret_and_diff_true_shows_without_the_flag"]),
    ),
    (
        "run_once",
        "debug: {msg: x}\n      run_once: true",
        Runs(&[
            "run_once_first_host_runs_and_the_others_share_its_result",
            "run_once_failure_stops_every_host",
        ]),
    ),
    (
        "delegate_to",
        "debug: {msg: x}\n      delegate_to: somewhere",
        Runs(&[
            "keywords_loops_lookups_and_filters_match_ansible_playbook",
            "failing_lookups_and_delegation_name_the_task",
        ]),
    ),
    (
        "vars",
        "debug: {msg: x}\n      vars: {a: 1}",
        Runs(&["includes_apply_vars_loops_loop_control_and_clear_facts"]),
    ),
    (
        "args",
        "command: 'true'\n      args: {chdir: /}",
        Runs(&["task_keywords_order_with_lists_check_mode_args_become_user_and_label"]),
    ),
    (
        "block",
        "block:\n        - debug: {msg: x}",
        Runs(&["diff_false_on_a_block_hides_the_secret_and_diff_true_shows_without_the_flag"]),
    ),
    (
        "rescue",
        "block:\n        - debug: {msg: x}\n      rescue:\n        - debug: {msg: y}",
        Runs(&["block_rescue_always"]),
    ),
    (
        "always",
        "block:\n        - debug: {msg: x}\n      always:\n        - debug: {msg: y}",
        Runs(&["block_rescue_always"]),
    ),
    (
        "environment",
        "debug: {msg: x}\n      environment: {A: b}",
        Runs(&["keywords_loops_lookups_and_filters_match_ansible_playbook"]),
    ),
    (
        "until",
        "debug: {msg: x}\n      until: true",
        Runs(&["keywords_loops_lookups_and_filters_match_ansible_playbook"]),
    ),
    (
        "retries",
        "debug: {msg: x}\n      until: true\n      retries: 2",
        Runs(&["keywords_loops_lookups_and_filters_match_ansible_playbook"]),
    ),
    (
        "throttle",
        "debug: {msg: x}\n      throttle: 1",
        Runs(&["throttle_limits_the_hosts_running_a_task_at_once_as_ansible"]),
    ),
    (
        "delay",
        "debug: {msg: x}\n      until: true\n      delay: 1",
        Runs(&["keywords_loops_lookups_and_filters_match_ansible_playbook"]),
    ),
    (
        "remote_user",
        "debug: {msg: x}\n      remote_user: u",
        Refused("not supported yet by deployer"),
    ),
    (
        "any_errors_fatal",
        "debug: {msg: x}\n      any_errors_fatal: true",
        Runs(&["any_errors_fatal_on_a_block_leads_every_host_to_its_rescue"]),
    ),
];

/// `loop_control` keys: `(key: value, fate)`.
const LOOP_CONTROL_CASES: &[(&str, Fate)] = &[
    (
        "loop_var: it",
        Runs(&["includes_apply_vars_loops_loop_control_and_clear_facts"]),
    ),
    (
        "index_var: idx",
        Runs(&["includes_apply_vars_loops_loop_control_and_clear_facts"]),
    ),
    (
        "label: x",
        Runs(&["task_keywords_order_with_lists_check_mode_args_become_user_and_label"]),
    ),
    (
        "pause: 1",
        Runs(&["includes_apply_vars_loops_loop_control_and_clear_facts"]),
    ),
    (
        "extended: true",
        Runs(&["includes_apply_vars_loops_loop_control_and_clear_facts"]),
    ),
    (
        "extended_allitems: false",
        Refused("unknown loop_control key"),
    ),
    ("break_when: [x]", Refused("unknown loop_control key")),
];

/// Play keywords: `(key: value, fate)`.
const PLAY_CASES: &[(&str, &str, Fate)] = &[
    (
        "name",
        "name: p",
        Runs(&["run_once_first_host_runs_and_the_others_share_its_result"]),
    ),
    (
        "hosts",
        "hosts: all",
        Runs(&["run_once_first_host_runs_and_the_others_share_its_result"]),
    ),
    (
        "roles",
        "roles: [r]",
        Runs(&["includes_apply_vars_loops_loop_control_and_clear_facts"]),
    ),
    (
        "pre_tasks",
        "pre_tasks: [{debug: {msg: x}}]",
        Runs(&["task_keywords_order_with_lists_check_mode_args_become_user_and_label"]),
    ),
    (
        "tasks",
        "tasks: [{debug: {msg: x}}]",
        Runs(&["run_once_first_host_runs_and_the_others_share_its_result"]),
    ),
    (
        "post_tasks",
        "post_tasks: [{debug: {msg: x}}]",
        Runs(&["task_keywords_order_with_lists_check_mode_args_become_user_and_label"]),
    ),
    (
        "handlers",
        "handlers: [{name: h, debug: {msg: x}}]",
        Runs(&["handlers_run_once_only_when_notified_by_a_change"]),
    ),
    (
        "vars",
        "vars: {a: 1}",
        Runs(&["ansible_become_that_is_not_a_boolean_fails_the_task"]),
    ),
    (
        "vars_files",
        "vars_files: [v.yml]",
        Runs(&["vault_values_are_masked_in_json_diff_output_and_deployed_in_clear"]),
    ),
    (
        "become",
        "become: true",
        Runs(&["become_is_needed_for_root_owned_paths"]),
    ),
    (
        "become_user",
        "become_user: deploy",
        Runs(&["task_keywords_order_with_lists_check_mode_args_become_user_and_label"]),
    ),
    (
        "become_method",
        "become_method: su",
        Refused("only become_method: sudo is supported"),
    ),
    (
        "gather_facts",
        "gather_facts: false",
        Runs(&["includes_apply_vars_loops_loop_control_and_clear_facts"]),
    ),
    (
        "environment",
        "environment: {A: b}",
        Runs(&["keywords_loops_lookups_and_filters_match_ansible_playbook"]),
    ),
    (
        "gather_subset",
        "gather_subset: [min]",
        Runs(&["facts_match_ansible_setup"]),
    ),
    (
        "tags",
        "tags: [t]",
        Runs(&["tags_select_tasks_with_always_and_never"]),
    ),
    (
        "any_errors_fatal",
        "any_errors_fatal: true",
        Runs(&["any_errors_fatal_stops_every_host_after_the_failing_task"]),
    ),
    (
        "max_fail_percentage",
        "max_fail_percentage: 30",
        Runs(&["max_fail_percentage_stops_the_batch_and_the_playbook"]),
    ),
    (
        "serial",
        "serial: 1",
        Runs(&["serial_batches_and_a_failed_batch_ends_the_playbook"]),
    ),
    (
        "strategy",
        "strategy: free",
        Runs(&["strategy_linear_keeps_hosts_in_step_and_free_does_not"]),
    ),
];

fn load(dir: &Path, site: &str) -> Result<String, String> {
    std::fs::write(dir.join("site.yml"), site).expect("write site.yml");
    std::fs::write(dir.join("v.yml"), "a: 1\n").expect("write v.yml");
    std::fs::create_dir_all(dir.join("roles/r/tasks")).expect("mkdir role");
    std::fs::write(dir.join("roles/r/tasks/main.yml"), "- debug: {msg: r}\n").expect("write role");
    load_playbook(&dir.join("site.yml"), &Registry)
        .map(|pb| format!("{:?}", pb.plays))
        .map_err(|e| e.to_string())
}

/// Every test function of the repository, by name (`fn NAME(` in tests/ and src/).
fn test_names() -> String {
    let mut all = String::new();
    for dir in ["tests", "src"] {
        let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    all.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                }
            }
        }
    }
    all
}

fn check(
    what: &str,
    with: Result<String, String>,
    without: Result<String, String>,
    fate: &Fate,
    sources: &str,
) {
    match fate {
        Refused(text) => {
            let err = with
                .err()
                .unwrap_or_else(|| panic!("{what}: accepted, expected a refusal"));
            assert!(
                err.contains(text),
                "{what}: refused with '{err}', expected '{text}'"
            );
            assert!(
                err.contains("site.yml:"),
                "{what}: the refusal names no file:line: {err}"
            );
        }
        Runs(proofs) => {
            let with =
                with.unwrap_or_else(|e| panic!("{what}: refused ({e}), expected it to load"));
            let without = without
                .unwrap_or_else(|e| panic!("{what}: the task without it fails to load: {e}"));
            assert_ne!(
                with, without,
                "{what}: loading it changes nothing (accepted and ignored)"
            );
            for p in *proofs {
                assert!(
                    sources.contains(&format!("fn {p}(")),
                    "{what}: the test named as its proof, {p}, does not exist"
                );
            }
        }
    }
}

#[test]
fn every_task_keyword_is_used_or_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sources = test_names();
    for kw in TASK_KEYWORDS {
        let (_, task, fate) = TASK_CASES
            .iter()
            .find(|(k, _, _)| k == kw)
            .unwrap_or_else(|| {
                panic!(
                    "the loader accepts the task keyword '{kw}' but the walk has no entry for it"
                )
            });
        let play = |t: &str| {
            format!(
                "- hosts: all\n  handlers:\n    - name: h\n      debug: {{msg: h}}\n  tasks:\n    - {t}\n"
            )
        };
        let without: String = match task.rsplit_once('\n') {
            Some((head, _)) => head.to_string(),
            None => "debug: {msg: x}".to_string(),
        };
        check(
            &format!("task keyword '{kw}'"),
            load(dir.path(), &play(task)),
            load(dir.path(), &play(&without)),
            fate,
            &sources,
        );
    }
}

#[test]
fn every_loop_control_key_is_used_or_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sources = test_names();
    for (kv, fate) in LOOP_CONTROL_CASES {
        let play = |lc: &str| {
            format!(
                "- hosts: all\n  tasks:\n    - debug: {{msg: x}}\n      loop: [1]\n      loop_control: {{{lc}}}\n"
            )
        };
        // Without the key: a loop_control that sets nothing else.
        check(
            &format!("loop_control {kv}"),
            load(dir.path(), &play(kv)),
            load(dir.path(), &play("")),
            fate,
            &sources,
        );
    }
}

#[test]
fn every_play_keyword_is_used_or_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sources = test_names();
    for kw in PLAY_KEYS {
        let (_, line, fate) = PLAY_CASES
            .iter()
            .find(|(k, _, _)| k == kw)
            .unwrap_or_else(|| {
                panic!(
                    "the loader accepts the play keyword '{kw}' but the walk has no entry for it"
                )
            });
        // A play keyword that only reaches the play's tasks (environment) is
        // seen in a play that has one.
        let base = if *kw == "hosts" {
            "- name: p\n"
        } else if *kw == "environment" {
            "- hosts: all\n  tasks: [{debug: {msg: x}}]\n"
        } else {
            "- hosts: all\n"
        };
        let with = if *kw == "hosts" {
            format!("- {line}\n  name: p\n")
        } else {
            format!("{base}  {line}\n")
        };
        let without = if *kw == "hosts" {
            "- hosts: other\n  name: p\n".to_string()
        } else {
            base.to_string()
        };
        check(
            &format!("play keyword '{kw}'"),
            load(dir.path(), &with),
            load(dir.path(), &without),
            fate,
            &sources,
        );
    }
}
