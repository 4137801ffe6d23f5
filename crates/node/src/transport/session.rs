//! A session as a transport without connections keeps it for the master: the agent's
//! messages arrive as requests, each waiting for its answer (what the master sends while it
//! handles that message: its session loop reads the next message only once it has sent
//! those), and what the master sends at any other time waits in a mailbox for the agent to
//! fetch. HTTP's long poll fetches it; gRPC's stream carries it down.

use crate::clock::now;
use crate::codec::CodecError;
use crate::sync::lock;
use crate::transport::Channel;
use fleet_core::wire::Message;
use futures::{Sink, Stream};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Notify};

/// An agent's message, and where its answer goes.
pub(crate) type Request = (Message, oneshot::Sender<Vec<Message>>);

/// One agent's session, as its requests see it.
pub(crate) struct Session {
    /// The agent that registered it: the paths that name an agent must name this one.
    pub(crate) agent: String,
    /// Hands the master the agent's messages; `None` once the session ended.
    pub(crate) inbound: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    /// What the master sent outside an answer, for the next long poll.
    pub(crate) mailbox: Mutex<VecDeque<Message>>,
    pub(crate) mail: Notify,
    /// The master dropped its side of the session.
    pub(crate) closed: AtomicBool,
    pub(crate) last_seen: Mutex<Instant>,
}

impl Session {
    /// A new session for `agent`, and the master's end of it.
    pub(crate) fn open(agent: &str) -> (Arc<Session>, SessionChannel) {
        let (inbound, requests) = mpsc::unbounded_channel();
        let session = Arc::new(Session {
            agent: agent.to_string(),
            inbound: Mutex::new(Some(inbound)),
            mailbox: Mutex::default(),
            mail: Notify::new(),
            closed: AtomicBool::new(false),
            last_seen: Mutex::new(now()),
        });
        let channel = SessionChannel {
            session: session.clone(),
            requests,
            answering: None,
        };
        (session, channel)
    }

    /// What the master sent outside an answer so far.
    pub(crate) fn take_mail(&self) -> Vec<Message> {
        lock(&self.mailbox).drain(..).collect()
    }

    /// Adds `messages` to the mail, as the master's own.
    pub(crate) fn post(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        lock(&self.mailbox).extend(messages);
        self.mail.notify_one();
    }

    /// The next mail, waiting for some; `None` once the master dropped its side and all its
    /// mail was taken.
    pub(crate) async fn next_mail(&self) -> Option<Vec<Message>> {
        loop {
            let mail = self.take_mail();
            if !mail.is_empty() {
                return Some(mail);
            }
            if self.is_closed() {
                return None;
            }
            self.mail.notified().await;
        }
    }

    /// The master dropped its side.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn touch(&self) {
        *lock(&self.last_seen) = now();
    }

    /// Hands `message` to the master and waits for its answer; `None` if the session ended.
    pub(crate) async fn exchange(&self, message: Message) -> Option<Vec<Message>> {
        self.touch();
        let (slot, answer) = oneshot::channel();
        lock(&self.inbound).as_ref()?.send((message, slot)).ok()?;
        answer.await.ok()
    }

    pub(crate) fn end(&self) {
        lock(&self.inbound).take();
    }
}

/// The master's end of one session.
pub(crate) struct SessionChannel {
    session: Arc<Session>,
    requests: mpsc::UnboundedReceiver<Request>,
    /// The request being handled, and the answer so far.
    answering: Option<(oneshot::Sender<Vec<Message>>, Vec<Message>)>,
}

impl SessionChannel {
    fn answer(&mut self) {
        if let Some((slot, messages)) = self.answering.take() {
            let _ = slot.send(messages);
        }
    }
}

impl Channel for SessionChannel {}

impl Stream for SessionChannel {
    type Item = Result<Message, CodecError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Asked for the next message: the master sent all it had to say to the last one.
        self.answer();
        match self.requests.poll_recv(cx) {
            Poll::Ready(Some((message, slot))) => {
                self.answering = Some((slot, Vec::new()));
                Poll::Ready(Some(Ok(message)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Sink<Message> for SessionChannel {
    type Error = CodecError;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), CodecError> {
        match &mut self.answering {
            Some((_, answer)) => answer.push(message),
            None => {
                lock(&self.session.mailbox).push_back(message);
                self.session.mail.notify_one();
            }
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for SessionChannel {
    /// The master ended the session: the answer it was giving goes out, its mailbox is still
    /// read by the next long poll, and every request after that is told the session is gone.
    fn drop(&mut self) {
        self.answer();
        self.session.closed.store(true, Ordering::Release);
        self.session.mail.notify_one();
    }
}
