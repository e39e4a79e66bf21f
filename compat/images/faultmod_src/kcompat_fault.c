// SPDX-License-Identifier: GPL-2.0
/*
 * kcompat_fault: real kernel faults on request, for the compat suite's self-check.
 *
 * Writing one command to /proc/kcompat_fault (root only) triggers it in the writer's context:
 *
 *   warn            WARN(): a WARNING; the write returns normally
 *   bug             BUG(): an oops (a panic with oops=panic)
 *   oops            a NULL pointer dereference: a page-fault oops
 *   hang SECONDS    sleeps uninterruptibly, for khungtaskd's "blocked for more than N seconds"
 *   lockup SECONDS  spins with preemption disabled, for the soft-lockup watchdog
 *
 * Each fault is raised in a noinline function of its own, so that the report's trace names it
 * (the console classifier's title is "WARNING in kcompat_fault_warn" and so on).
 */

#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#define KCOMPAT_FAULT_MAX_SECONDS 600
#define KCOMPAT_FAULT_COMMAND_MAX 32

static struct proc_dir_entry *kcompat_fault_entry;

static noinline void kcompat_fault_warn(void)
{
	WARN(1, "kcompat_fault: injected warning");
}

static noinline void kcompat_fault_bug(void)
{
	BUG();
}

static noinline void kcompat_fault_oops(void)
{
	/* volatile: the compiler must really load through the NULL pointer, not reason it away. */
	int *volatile nowhere = NULL;

	pr_info("kcompat_fault: dereferencing NULL: %d\n", *nowhere);
}

static noinline void kcompat_fault_hang(unsigned int seconds)
{
	unsigned long until = jiffies + seconds * HZ;

	/*
	 * TASK_UNINTERRUPTIBLE all along: khungtaskd reports a task in D state that has not run for
	 * hung_task_timeout_secs. schedule_timeout() itself, not schedule_timeout_uninterruptible(),
	 * so that the first frame of the trace past the scheduler's own is this function.
	 */
	while (time_before(jiffies, until)) {
		set_current_state(TASK_UNINTERRUPTIBLE);
		schedule_timeout(until - jiffies);
	}
	__set_current_state(TASK_RUNNING);
}

static noinline void kcompat_fault_lockup(unsigned int seconds)
{
	unsigned long until = jiffies + seconds * HZ;

	/*
	 * No schedule(), no touch_softlockup_watchdog(): the watchdog's stopper thread cannot run on
	 * this CPU. Interrupts stay on, so jiffies advances and the watchdog's timer reports the
	 * lockup with this function at RIP (the loop reads jiffies inline, it calls nothing).
	 */
	preempt_disable();
	while (time_before(jiffies, until))
		cpu_relax();
	preempt_enable();
}

static int kcompat_fault_seconds(const char *argument, unsigned int *seconds)
{
	int err = kstrtouint(argument, 10, seconds);

	if (err)
		return err;
	if (*seconds == 0 || *seconds > KCOMPAT_FAULT_MAX_SECONDS)
		return -ERANGE;
	return 0;
}

static int kcompat_fault_run(char *command)
{
	char *argument = strim(command);
	char *name = strsep(&argument, " ");
	unsigned int seconds;
	int err;

	if (!strcmp(name, "warn") && !argument) {
		kcompat_fault_warn();
		return 0;
	}
	if (!strcmp(name, "bug") && !argument) {
		kcompat_fault_bug();
		return 0;
	}
	if (!strcmp(name, "oops") && !argument) {
		kcompat_fault_oops();
		return 0;
	}
	if (!argument)
		return -EINVAL;
	err = kcompat_fault_seconds(skip_spaces(argument), &seconds);
	if (err)
		return err;
	if (!strcmp(name, "hang")) {
		kcompat_fault_hang(seconds);
		return 0;
	}
	if (!strcmp(name, "lockup")) {
		kcompat_fault_lockup(seconds);
		return 0;
	}
	return -EINVAL;
}

static ssize_t kcompat_fault_write(struct file *file, const char __user *buffer, size_t count, loff_t *pos)
{
	char command[KCOMPAT_FAULT_COMMAND_MAX];
	int err;

	if (count == 0 || count >= sizeof(command))
		return -EINVAL;
	if (copy_from_user(command, buffer, count))
		return -EFAULT;
	command[count] = '\0';
	err = kcompat_fault_run(command);
	return err ? err : count;
}

static const struct proc_ops kcompat_fault_ops = {
	.proc_write = kcompat_fault_write,
	.proc_lseek = noop_llseek,
};

static int __init kcompat_fault_init(void)
{
	kcompat_fault_entry = proc_create("kcompat_fault", 0200, NULL, &kcompat_fault_ops);
	if (!kcompat_fault_entry)
		return -ENOMEM;
	pr_info("kcompat_fault: write warn, bug, oops, 'hang SECONDS' or 'lockup SECONDS' to /proc/kcompat_fault\n");
	return 0;
}

static void __exit kcompat_fault_exit(void)
{
	proc_remove(kcompat_fault_entry);
}

module_init(kcompat_fault_init);
module_exit(kcompat_fault_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Real kernel faults on request, for the kcompat suite's self-check");
