//! Conversations in use, kept in memory: what a turn reads before it calls
//! the provider (the conversation, the recent history its prompt carries, the
//! list of its workspace files), so that a turn on a conversation this process
//! already knows reads nothing from the database.
//!
//! Only this process writes a conversation's messages and files, so the copy
//! stays exact if every write tells it, after its commit, what changed:
//! `appended` for a turn's messages, `forget` for anything else. A copy is
//! filled from the database on a conversation's first turn; a write that lands
//! while a fill is reading makes that fill's result unusable for keeping (the
//! turn still uses it: it is a consistent snapshot of its moment). Accounts
//! are not kept here: a user deleted or disabled from the command line is
//! refused by the token check, which reads the database, before this is used.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::llm::Window;
use crate::store::conversations::{Conversation, HistoryMessage};
use crate::store::workspace_files::WorkspaceFile;

/// At most this many messages of a conversation go into a prompt.
pub const MAX_HISTORY_MESSAGES: usize = 200;
/// Conversations kept at most; beyond, the least recently used are dropped
/// (and read again when next used). Far more than a team has in use at once:
/// a larger cache only kept idle conversations, and the heap they filled
/// slowed every turn (10,000 gave 7,096 → 6,934 → 6,490 turns/s over three
/// rounds of new conversations, and 265 MiB; 2,000 gave 7,564 → 7,127 →
/// 7,261, and 150 MiB).
const MAX_CONVERSATIONS: usize = 2_000;
/// Bytes of message text kept at most, over all conversations.
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// One conversation as a turn needs it.
#[derive(Debug, Clone)]
pub struct Live {
    pub conversation: Conversation,
    /// The newest message's `seq` (failed turns included): a turn's messages
    /// are added only when they follow it directly.
    pub last_seq: i64,
    /// The newest successful messages whose tokens fit the context budget,
    /// oldest first (see `trim_window`); turns share it with their prompts.
    pub window: Arc<Window>,
    pub manifest: Arc<Vec<WorkspaceFile>>,
}

/// A message's text is kept twice: as text, and as JSON in its window.
const COPIES_OF_TEXT: usize = 2;

impl Live {
    fn bytes(&self) -> usize {
        COPIES_OF_TEXT * self.window.iter().map(|m| m.content.len()).sum::<usize>()
            + self
                .manifest
                .iter()
                .map(|f| f.path.len() + 96)
                .sum::<usize>()
            + 512
    }
}

/// Drops the oldest messages of `window` (oldest first) until it is what a
/// prompt may carry: the newest message always, then older ones while their
/// tokens together stay within `budget`, at most `MAX_HISTORY_MESSAGES`.
/// Answers the bytes of text dropped.
pub fn trim_window(window: &mut Window, budget: u64) -> usize {
    let mut used = 0u64;
    let mut kept = 0usize;
    for message in window.iter().rev() {
        used = used.saturating_add(message.content_tokens);
        if (used > budget && kept > 0) || kept == MAX_HISTORY_MESSAGES {
            break;
        }
        kept += 1;
    }
    let excess = window.len() - kept;
    window.drop_oldest(excess)
}

enum Slot {
    /// `used`: when a turn last used it, on `Inner::clock`.
    Ready { live: Arc<Live>, used: u64 },
    /// A fill is reading the database; `spoiled` once a write landed meanwhile.
    Filling { fill: u64, spoiled: bool },
}

#[derive(Default)]
struct Inner {
    slots: HashMap<String, Slot>,
    bytes: usize,
    fills: u64,
    /// Counts uses of kept conversations, to tell the least recently used.
    clock: u64,
}

impl Inner {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn remove(&mut self, id: &str) {
        if let Some(Slot::Ready { live, .. }) = self.slots.remove(id) {
            self.bytes = self.bytes.saturating_sub(live.bytes());
        }
    }

    /// Makes room for `incoming` bytes. Over a limit, it drops the tenth of
    /// the kept conversations that were used least recently, so that finding
    /// them (a pass over all) is paid once per many conversations dropped,
    /// and the conversations in use stay.
    fn make_room(&mut self, incoming: usize) {
        while self.slots.len() >= MAX_CONVERSATIONS || self.bytes + incoming > MAX_BYTES {
            let mut stamps: Vec<u64> = self
                .slots
                .values()
                .filter_map(|slot| match slot {
                    Slot::Ready { used, .. } => Some(*used),
                    Slot::Filling { .. } => None,
                })
                .collect();
            if stamps.is_empty() {
                break;
            }
            let dropped = stamps.len().div_ceil(10);
            let (_, &mut newest_dropped, _) = stamps.select_nth_unstable(dropped - 1);
            let mut freed = 0;
            self.slots.retain(|_, slot| match slot {
                Slot::Ready { live, used } if *used <= newest_dropped => {
                    freed += live.bytes();
                    false
                }
                _ => true,
            });
            self.bytes = self.bytes.saturating_sub(freed);
        }
    }

    fn put(&mut self, id: String, live: Arc<Live>) {
        let bytes = live.bytes();
        if bytes > MAX_BYTES / 8 {
            self.slots.remove(&id);
            return;
        }
        self.remove(&id);
        self.make_room(bytes);
        self.bytes += bytes;
        let used = self.tick();
        self.slots.insert(id, Slot::Ready { live, used });
    }
}

/// What `LiveConversations::lookup` found.
pub enum Lookup<'a> {
    /// The conversation as it is now.
    Ready(Arc<Live>),
    /// Not kept: read it, and hand what was read to the fill to keep it.
    Read(Fill<'a>),
}

/// The conversations in use. See the module's description.
pub struct LiveConversations {
    inner: Mutex<Inner>,
    budget: u64,
}

impl std::fmt::Debug for LiveConversations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConversations")
            .field("kept", &self.inner.lock().slots.len())
            .finish_non_exhaustive()
    }
}

impl LiveConversations {
    /// `budget`: the tokens of history a prompt may carry.
    pub fn new(budget: u64) -> Self {
        Self {
            inner: Mutex::default(),
            budget,
        }
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    pub fn lookup(&self, id: &str) -> Lookup<'_> {
        let mut inner = self.inner.lock();
        let now = inner.tick();
        match inner.slots.get_mut(id) {
            Some(Slot::Ready { live, used }) => {
                *used = now;
                Lookup::Ready(Arc::clone(live))
            }
            // Another turn is filling it: read without keeping.
            Some(Slot::Filling { .. }) => Lookup::Read(Fill {
                live: self,
                id: id.to_owned(),
                fill: None,
            }),
            None => {
                inner.fills += 1;
                let fill = inner.fills;
                inner.slots.insert(
                    id.to_owned(),
                    Slot::Filling {
                        fill,
                        spoiled: false,
                    },
                );
                Lookup::Read(Fill {
                    live: self,
                    id: id.to_owned(),
                    fill: Some(fill),
                })
            }
        }
    }

    /// A conversation just created: nothing to read on its first turn.
    pub fn created(&self, conversation: Conversation) {
        let id = conversation.id.clone();
        self.inner.lock().put(
            id,
            Arc::new(Live {
                conversation,
                last_seq: 0,
                window: Arc::default(),
                manifest: Arc::default(),
            }),
        );
    }

    /// Messages were committed to a conversation, the first with `first_seq`.
    /// Called after the commit.
    pub fn appended(&self, id: &str, first_seq: i64, messages: &[Appended<'_>]) {
        let mut inner = self.inner.lock();
        let live = match inner.slots.get_mut(id) {
            None => return,
            Some(Slot::Filling { spoiled, .. }) => {
                *spoiled = true;
                return;
            }
            Some(Slot::Ready { live, .. }) => live,
        };
        if live.last_seq + 1 != first_seq {
            // Turns on one conversation finished out of order: read it again.
            inner.remove(id);
            return;
        }
        // Copies nothing unless a turn still holds the conversation or its
        // window: turns let go of both before their messages are written.
        let live = Arc::make_mut(live);
        live.last_seq += messages.len() as i64;
        let window = Arc::make_mut(&mut live.window);
        let mut added = 0;
        for message in messages.iter().filter(|m| m.succeeded) {
            added += message.content.len();
            window.push_back(HistoryMessage {
                from_assistant: message.from_assistant,
                content: message.content.into(),
                content_tokens: message.content_tokens,
            });
        }
        let dropped = trim_window(window, self.budget);
        inner.bytes =
            (inner.bytes + COPIES_OF_TEXT * added).saturating_sub(COPIES_OF_TEXT * dropped);
        if inner.bytes > MAX_BYTES {
            inner.make_room(0);
        }
    }

    /// Something else about a conversation changed (it ended, its files
    /// changed): it is read again on its next turn. Called after the commit.
    pub fn forget(&self, id: &str) {
        let mut inner = self.inner.lock();
        match inner.slots.get_mut(id) {
            Some(Slot::Filling { spoiled, .. }) => *spoiled = true,
            Some(Slot::Ready { .. }) => inner.remove(id),
            None => {}
        }
    }
}

/// A message a turn committed, as `LiveConversations::appended` takes it.
pub struct Appended<'a> {
    pub from_assistant: bool,
    pub content: &'a str,
    pub content_tokens: u64,
    /// Failed turns' messages take a place but are no part of the history.
    pub succeeded: bool,
}

/// A conversation being read from the database on a turn's behalf. Dropped
/// without `keep`, it leaves nothing behind.
pub struct Fill<'a> {
    live: &'a LiveConversations,
    id: String,
    /// `None` when another fill of the same conversation is under way.
    fill: Option<u64>,
}

impl Fill<'_> {
    /// Keeps what was read, unless a write landed since the fill began;
    /// answers it either way.
    pub fn keep(mut self, live: Live) -> Arc<Live> {
        let live = Arc::new(live);
        let Some(fill) = self.fill.take() else {
            return live;
        };
        let mut inner = self.live.inner.lock();
        match inner.slots.get(&self.id) {
            Some(Slot::Filling {
                fill: current,
                spoiled: false,
            }) if *current == fill => inner.put(self.id.clone(), Arc::clone(&live)),
            Some(Slot::Filling { fill: current, .. }) if *current == fill => {
                inner.slots.remove(&self.id);
            }
            _ => {}
        }
        live
    }
}

impl Drop for Fill<'_> {
    fn drop(&mut self) {
        let Some(fill) = self.fill else {
            return;
        };
        let mut inner = self.live.inner.lock();
        if matches!(inner.slots.get(&self.id), Some(Slot::Filling { fill: current, .. }) if *current == fill)
        {
            inner.slots.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from_assistant: bool, tokens: u64) -> HistoryMessage {
        HistoryMessage {
            from_assistant,
            content: format!("{tokens} tokens").into(),
            content_tokens: tokens,
        }
    }

    fn conversation(id: &str) -> Conversation {
        Conversation {
            id: id.to_owned(),
            user_id: 7,
            category: "qa".into(),
            assistant_id: "a".into(),
            agent_name: "A".into(),
            llm_model: "m".into(),
            status: "active".into(),
            title: None,
            created_at: "2026-12-04T00:00:00Z".into(),
            ended_at: None,
        }
    }

    fn tokens(window: &Window) -> Vec<u64> {
        window.iter().map(|m| m.content_tokens).collect()
    }

    #[test]
    fn the_window_keeps_the_newest_messages_that_fit_and_always_the_last() {
        let mut window: Window = [5, 4, 3, 2]
            .map(|t| message(false, t))
            .into_iter()
            .collect();
        trim_window(&mut window, 6);
        assert_eq!(tokens(&window), vec![3, 2]);

        let mut window: Window = [1, 50].map(|t| message(false, t)).into_iter().collect();
        trim_window(&mut window, 6);
        assert_eq!(tokens(&window), vec![50], "the newest stays even when over");

        let mut window: Window = (0..250).map(|_| message(false, 1)).collect();
        trim_window(&mut window, 1_000_000);
        assert_eq!(window.len(), MAX_HISTORY_MESSAGES);
    }

    #[test]
    fn a_prompt_history_starts_with_the_users_turn() {
        let window: Window = [(true, 1), (true, 2), (false, 3), (true, 4)]
            .map(|(a, t)| message(a, t))
            .into_iter()
            .collect();
        let history = crate::llm::History::new(Arc::new(window));
        let carried: Vec<u64> = history.iter().map(|m| m.content_tokens).collect();
        assert_eq!(carried, vec![3, 4]);
    }

    fn turn<'a>(user: &'a str, reply: &'a str) -> [Appended<'a>; 2] {
        [
            Appended {
                from_assistant: false,
                content: user,
                content_tokens: 3,
                succeeded: true,
            },
            Appended {
                from_assistant: true,
                content: reply,
                content_tokens: 3,
                succeeded: true,
            },
        ]
    }

    fn ready(live: &LiveConversations, id: &str) -> Option<Arc<Live>> {
        match live.lookup(id) {
            Lookup::Ready(found) => Some(found),
            Lookup::Read(_) => None,
        }
    }

    #[test]
    fn turns_in_order_extend_the_kept_history_and_out_of_order_ones_drop_it() {
        let live = LiveConversations::new(1000);
        live.created(conversation("c"));
        live.appended("c", 1, &turn("hello", "hi"));
        let kept = ready(&live, "c").expect("kept");
        assert_eq!(kept.last_seq, 2);
        let texts: Vec<&str> = kept.window.iter().map(|m| &*m.content).collect();
        assert_eq!(texts, vec!["hello", "hi"]);

        // A failed turn takes a place but adds nothing to the history.
        live.appended(
            "c",
            3,
            &[Appended {
                from_assistant: false,
                content: "lost",
                content_tokens: 1,
                succeeded: false,
            }],
        );
        let kept = ready(&live, "c").expect("kept");
        assert_eq!((kept.last_seq, kept.window.len()), (3, 2));

        // seq 4 and 5 were someone else's: this turn is not next.
        live.appended("c", 6, &turn("late", "reply"));
        assert!(ready(&live, "c").is_none(), "read again after a gap");
    }

    #[test]
    fn the_bytes_kept_are_counted_as_messages_come_and_go() {
        let live = LiveConversations::new(10);
        live.created(conversation("a"));
        live.created(conversation("b"));
        for n in 0..20 {
            live.appended("a", 2 * n + 1, &turn("question", "a longer answer"));
        }
        live.appended("b", 1, &turn("hi", "hello"));
        let inner = live.inner.lock();
        assert_eq!(inner.bytes, bytes_of_kept(&inner));
        let Some(Slot::Ready { live: a, .. }) = inner.slots.get("a") else {
            panic!("kept");
        };
        assert_eq!(a.window.len(), 3, "3 + 3 + 3 tokens fit a budget of 10");
    }

    #[test]
    fn past_the_limit_the_least_recently_used_tenth_is_dropped() {
        let live = LiveConversations::new(100);
        for n in 0..MAX_CONVERSATIONS {
            live.created(conversation(&format!("c{n}")));
        }
        assert!(ready(&live, "c0").is_some(), "a use makes c0 the newest");
        live.created(conversation("new"));

        let inner = live.inner.lock();
        assert_eq!(
            inner.slots.len(),
            MAX_CONVERSATIONS - MAX_CONVERSATIONS / 10 + 1
        );
        let tenth = MAX_CONVERSATIONS / 10;
        let newest = MAX_CONVERSATIONS - 1;
        for id in [
            "c0".into(),
            format!("c{}", tenth + 1),
            format!("c{newest}"),
            "new".into(),
        ] {
            assert!(inner.slots.contains_key(&id), "{id} is kept");
        }
        for id in ["c1".into(), format!("c{}", tenth / 2), format!("c{tenth}")] {
            assert!(!inner.slots.contains_key(&id), "{id} is dropped");
        }
        assert_eq!(inner.bytes, bytes_of_kept(&inner));
    }

    /// What the kept conversations hold, counted afresh.
    fn bytes_of_kept(inner: &Inner) -> usize {
        inner
            .slots
            .values()
            .map(|slot| match slot {
                Slot::Ready { live: kept, .. } => kept.bytes(),
                Slot::Filling { .. } => 0,
            })
            .sum()
    }

    #[test]
    fn a_write_during_a_fill_keeps_the_fill_from_being_kept() {
        let live = LiveConversations::new(1000);
        let Lookup::Read(fill) = live.lookup("c") else {
            panic!("nothing kept yet");
        };
        // A second turn on the same conversation reads without keeping.
        let Lookup::Read(second) = live.lookup("c") else {
            panic!("being filled");
        };
        live.appended("c", 1, &turn("hello", "hi"));
        let read = Live {
            conversation: conversation("c"),
            last_seq: 0,
            window: Arc::default(),
            manifest: Arc::default(),
        };
        second.keep(read.clone());
        fill.keep(read.clone());
        assert!(
            ready(&live, "c").is_none(),
            "the fill read before the write"
        );

        // Without a write in between, the fill is kept.
        let Lookup::Read(fill) = live.lookup("c") else {
            panic!("nothing kept");
        };
        fill.keep(read);
        assert!(ready(&live, "c").is_some());

        // Forgotten after another change; a dropped fill leaves no trace.
        live.forget("c");
        let Lookup::Read(fill) = live.lookup("c") else {
            panic!("forgotten");
        };
        drop(fill);
        assert!(matches!(
            live.lookup("c"),
            Lookup::Read(Fill { fill: Some(_), .. })
        ));
    }
}
